"""ProgressLog: log lines with step, rate, ETA and the current losses, by time and by step count."""

import io
import logging
import re

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from wall_core.training.progress import ProgressLog, format_duration

LINE = re.compile(
    r"step (\d+)/(\d+) \((\d+)%\) \| ([\d.]+) steps/s \| elapsed (\S+) \| ETA (\S+) \| loss (\S+) mse (\S+)"
)


class Regression(L.LightningModule):
    """y = 3x - 1 by SGD; logs train/loss and one named term, like WallLightningModule does."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(1, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.lin(x), y)
        self.log("train/loss", loss)
        self.log("train/mse", loss.detach())
        self.log("other/ignored", 123.0)
        return loss

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


class FakeClock:
    """Each call advances ``dt`` seconds."""

    def __init__(self, dt: float) -> None:
        self.t, self.dt = 0.0, dt

    def __call__(self) -> float:
        self.t += self.dt
        return self.t


def _fit(callback: ProgressLog, steps: int = 20, progress_bar: bool = False) -> None:
    torch.manual_seed(0)
    x = torch.linspace(-1, 1, 64)[:, None]
    loader = DataLoader(TensorDataset(x, 3 * x - 1), batch_size=8, shuffle=True)
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=progress_bar,
        enable_model_summary=False,
        callbacks=[callback],
    )
    trainer.fit(Regression(), loader)


def _lines(caplog) -> list[re.Match]:
    return [m for r in caplog.records if (m := LINE.search(r.getMessage()))]


def test_logs_every_n_steps_with_eta_and_falling_loss(caplog):
    caplog.set_level(logging.INFO, logger="wall_core.training.progress")
    cb = ProgressLog(every_s=1e9, every_n_steps=5, clock=FakeClock(0.5))
    _fit(cb, steps=20)
    lines = _lines(caplog)
    assert [int(m.group(1)) for m in lines] == [5, 10, 15, 20]
    assert all(int(m.group(2)) == 20 for m in lines)
    assert [int(m.group(3)) for m in lines] == [25, 50, 75, 100]
    # fake clock: 0.5 s per call, one call per step -> 2 steps/s; ETA counts down to zero
    assert float(lines[0].group(4)) == pytest.approx(2.0, rel=0.15)
    assert lines[0].group(6) == "8s" and lines[-1].group(6) == "0s"
    losses = [float(m.group(7)) for m in lines]
    assert losses[-1] < 0.5 * losses[0]  # the logged value is the live loss, and it falls
    assert all(float(m.group(7)) == float(m.group(8)) for m in lines)  # mse term == total here
    assert not any("ignored" in r.getMessage() for r in caplog.records)  # other prefixes are not shown
    assert cb.lines == 4  # the closing line is not repeated at step 20


def test_time_based_lines_at_least_every_interval(caplog):
    caplog.set_level(logging.INFO, logger="wall_core.training.progress")
    cb = ProgressLog(every_s=30.0, clock=FakeClock(10.0))  # 10 s per step: a line every 3rd step
    _fit(cb, steps=12)
    steps = [int(m.group(1)) for m in _lines(caplog)]
    assert steps == [3, 6, 9, 12]
    assert "training from step 0 to 12" in caplog.text


def test_no_tty_mode_stays_quiet_only_under_a_terminal_bar(caplog):
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    caplog.set_level(logging.INFO, logger="wall_core.training.progress")
    quiet = ProgressLog(every_n_steps=2, when="no-tty", stream=Tty(), clock=FakeClock(1.0))
    _fit(quiet, steps=6, progress_bar=True)
    assert quiet.lines == 0
    piped = ProgressLog(every_n_steps=2, when="no-tty", stream=io.StringIO(), clock=FakeClock(1.0))
    _fit(piped, steps=6, progress_bar=True)
    assert piped.lines == 3


def test_format_and_bad_arguments():
    assert [format_duration(s) for s in (4.2, 65.2, 3725.0)] == ["4s", "1m05s", "1h02m05s"]
    assert format_duration(float("nan")) == "?"
    with pytest.raises(ValueError, match="every_s"):
        ProgressLog(every_s=0)
    with pytest.raises(ValueError, match="every_n_steps"):
        ProgressLog(every_n_steps=0)
    with pytest.raises(ValueError, match="when"):
        ProgressLog(when="sometimes")
