"""A writer killed with SIGKILL at several points (inside its commits and while adding frames): every episode
whose ``save_episode`` returned must read back exactly, else the case counts as data lost."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
from functools import partial
from pathlib import Path

import wall_data as wd

from . import Case, Outcome

CHILD = textwrap.dedent(
    """
    import os, signal, sys
    import numpy as np
    import wall_data as wd

    root, kill_at = sys.argv[1], int(sys.argv[2])
    calls, real = [0], os.replace

    def replace(a, b):  # SIGKILL ourselves at the kill_at-th rename (the writer's commit steps)
        calls[0] += 1
        if calls[0] == kill_at:
            os.kill(os.getpid(), signal.SIGKILL)
        return real(a, b)

    os.replace = replace
    feats = {"observation.state": {"dtype": "float32", "shape": [3]}, "action": {"dtype": "float32", "shape": [2]},
             "observation.images.cam": {"dtype": "video", "shape": [16, 16, 3]}}
    w = wd.LeRobotWriter(root, fps=10, features=feats, data_files_size_in_mb=0.004, video_files_size_in_mb=0.004)
    for ep in range(4):
        for i in range(6):
            w.add_frame({"observation.state": [ep, i, 0], "action": [ep, i],
                         "observation.images.cam": np.full((16, 16, 3), 20 * i, np.uint8)})
        w.save_episode(task=f"task {ep}")
        print(ep, flush=True)
    w.finalize()
    print("done", flush=True)
    """
)


def _kill(root: Path, at: int) -> tuple[Outcome, str]:
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(at)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if at == 0 and line.strip() == "1":  # the parent kills it while it adds frames of episode 2
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=300)
    saved = sum(x.isdigit() for x in lines)
    if saved == 0 and not (root / "meta/info.json").exists():
        return "clear", "killed before the first episode was saved; nothing to keep"
    try:
        ds = wd.LeRobotDataset(root)
        got = {int(ds[i]["episode_index"]) for i in range(len(ds))}
        wrong = [
            i
            for i in range(len(ds))
            if ds[i]["action"][0].tolist() != [ds[i]["episode_index"], ds[i]["frame_index"]]
        ]
    except Exception as e:
        return "lost", f"{saved} saved episodes, dataset unreadable: {type(e).__name__}: {e}"
    if not set(range(saved)) <= got or wrong:
        return "lost", f"{saved} saved, read back episodes {sorted(got)}, {len(wrong)} wrong rows"
    return "clear", f"killed after {saved} saved episodes (rc {proc.returncode}); all read back"


def cases(work: Path) -> list[Case]:
    """SIGKILL at the 3rd, 11th, 17th and 26th commit rename, and from the parent while frames are added."""
    return [Case("dataset", f"writer SIGKILL at rename {k}" if k else "writer SIGKILL while adding frames",
                 partial(_kill, work / f"kill{k}", k)) for k in (3, 11, 17, 26, 0)]  # fmt: skip
