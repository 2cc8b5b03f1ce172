"""Each processing step on its own: normalisation rules, embodiment layout and masks, images, text limits,
key mapping and the observation contract."""

import dataclasses

import numpy as np
import pytest
import torch

import wall_data as wd
from wall_core.backbones.tokenizer import byte_level_tokenizer
from wall_core.processing import (
    CropToEmbodiment,
    DefaultPrompt,
    ImageConversion,
    KeyMapping,
    Normalize,
    ObservationContract,
    PadToEmbodiment,
    Unnormalize,
    to_model_image,
)

H = 4


def test_each_dataset_is_normalised_with_its_own_stats(stats_box):
    stats = {
        "arm": {"action": stats_box([0.0, 0.0], [2.0, 4.0])},
        "cart": {"action": stats_box([-10.0, -10.0], [10.0, 10.0])},
    }
    norm = Normalize(stats, keys=["action"])
    x = torch.tensor([[1.0, 1.0]])
    torch.testing.assert_close(norm({"dataset": "arm", "action": x})["action"], torch.tensor([[0.0, -0.5]]))
    torch.testing.assert_close(norm({"dataset": "cart", "action": x})["action"], torch.tensor([[0.1, 0.1]]))
    with pytest.raises(KeyError, match="'boat'"):
        norm({"dataset": "boat", "action": x})
    un = Unnormalize(stats)
    torch.testing.assert_close(un(torch.tensor([[[0.0, -0.5]]]), "arm"), torch.tensor([[[1.0, 1.0]]]))
    torch.testing.assert_close(un(torch.tensor([[[0.1, 0.1]]]), "cart"), torch.tensor([[[1.0, 1.0]]]))


def test_quantile_rule_zero_range_and_clamp(stats_box):
    st = {"d": {"observation.state": stats_box([0.0, 3.0], [2.0, 3.0])}}  # dim 1 constant: range -> 1
    x = torch.tensor([1.5, 3.25])
    torch.testing.assert_close(Normalize(st)({"dataset": "d", "observation.state": x})["observation.state"],
                               torch.tensor([0.5, -0.5]))  # fmt: skip
    far = torch.tensor([5.0, 9.0])
    assert Normalize(st)({"dataset": "d", "observation.state": far})["observation.state"].tolist() == [
        1.0,
        1.0,
    ]
    raw = Normalize(st, clamp=False)({"dataset": "d", "observation.state": far})["observation.state"]
    torch.testing.assert_close(raw, torch.tensor([4.0, 11.0]))
    un = Unnormalize({"d": {"action": stats_box([0.0], [2.0])}})  # the output side never clamps
    torch.testing.assert_close(un(torch.tensor([[[1.5]]]), "d"), torch.tensor([[[2.5]]]))


def _spec():
    return wd.EmbodimentSpec(
        "r", ("a", "b", "c", "d"), ("x", "y", "g"), state_slots=(0, 1, 2, 10), action_slots=(3, 4, 25)
    )


def test_masks_and_placement_from_the_spec_in_a_26d_layout():
    pad = PadToEmbodiment(26, 26, H, {"r": _spec()})
    act = torch.arange(H * 3, dtype=torch.float32).reshape(H, 3) + 1
    out = pad({"dataset": "r", "observation.state": torch.tensor([1.0, 2.0, 3.0, 4.0]), "action": act,
               "action_is_pad": torch.tensor([False, False, False, True])})  # fmt: skip
    assert torch.nonzero(out["state_mask"]).flatten().tolist() == [0, 1, 2, 10]
    assert out["state"][[0, 1, 2, 10]].tolist() == [1.0, 2.0, 3.0, 4.0] and out["state"].sum() == 10
    assert torch.nonzero(out["dof_mask"]).flatten().tolist() == [3, 4, 25]
    torch.testing.assert_close(out["actions"][:, [3, 4, 25]], act)
    assert out["actions"].abs().sum() == act.sum()
    assert out["action_loss_mask"].sum() == 3 * 3 and out["action_loss_mask"][3].sum() == 0
    crop = CropToEmbodiment(26, 26, {"r": _spec()})
    torch.testing.assert_close(crop(out["actions"][None], "r")[0], act)
    inference = pad({"dataset": "r", "observation.state": torch.zeros(4)})  # DOF mask comes from the spec
    assert inference["dof_mask"].sum() == 3 and inference["action_loss_mask"].sum() == 0


def test_nan_in_a_spec_that_does_not_allow_it_is_an_error():
    state = torch.tensor([1.0, float("nan"), 3.0, 4.0])
    with pytest.raises(ValueError, match=r"'observation.state' of robot 'r' contains NaN.*nan_is_missing"):
        PadToEmbodiment(26, 26, H, {"r": _spec()})({"dataset": "r", "observation.state": state})
    spec = dataclasses.replace(_spec(), meta={"nan_is_missing": True})
    out = PadToEmbodiment(26, 26, H, {"r": spec})({"dataset": "r", "observation.state": state})
    assert torch.nonzero(out["state_mask"]).flatten().tolist() == [0, 2, 10]
    assert out["state"][[0, 1, 2, 10]].tolist() == [1.0, 0.0, 3.0, 4.0]


def test_robot_that_does_not_fit_and_missing_state_are_errors():
    wide = wd.EmbodimentSpec("wide", tuple(f"s{i}" for i in range(27)), ("x",))
    with pytest.raises(ValueError, match="'wide' does not fit the model's padded state space"):
        PadToEmbodiment(26, 26, H, {"w": wide})
    with pytest.raises(ValueError, match="does not fit"):
        PadToEmbodiment(26, 26, H, {"r": wd.EmbodimentSpec("r", ("a",), ("x",), action_slots=(26,))})
    with pytest.raises(KeyError, match="lacks 'observation.state'"):
        PadToEmbodiment(26, 26, H, {"r": _spec()})({"dataset": "r", "action": torch.zeros(H, 3)})


def test_images_converted_once_float_rule_and_refusals():
    flat = torch.full((3, 8, 8), 0.2)
    img = to_model_image(flat, (8, 8))
    assert img.dtype == torch.uint8 and img.unique().tolist() == [51]  # round(255 * 0.2), not blackened
    hwc = np.full((16, 16, 3), 200, np.uint8)
    big = to_model_image(torch.from_numpy(hwc), (8, 8))
    assert big.shape == (3, 8, 8) and big.unique().tolist() == [200]
    same = torch.randint(0, 255, (3, 8, 8), dtype=torch.uint8)
    assert to_model_image(same, (8, 8)) is same  # uint8 at the model's size is kept as is
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_model_image(torch.full((3, 8, 8), 3.0), (8, 8))
    with pytest.raises(TypeError, match="int32"):
        to_model_image(torch.zeros((3, 8, 8), dtype=torch.int32), (8, 8))
    step = ImageConversion(["cam.a", "cam.b"], (8, 8))
    out = step({"cam.b": flat, "task": "t"})
    assert out["image_valid"].tolist() == [False, True] and out["images"][0].sum() == 0
    assert "cam.b" not in out and out["images"][1].float().mean() == 51


def _prompt(**kw):
    tok = byte_level_tokenizer()
    return DefaultPrompt(image_tokens=2, host_vocab_size=len(tok), text_tokenizer=tok, **kw)


def _tok_sample(**kw):
    return {"images": torch.zeros(1, 3, 8, 8, dtype=torch.uint8), "image_valid": torch.tensor([True]),
            "state_mask": torch.ones(3, dtype=torch.bool), **kw}  # fmt: skip


def test_text_limits_are_counted_in_tokens_and_answers_never_cut():
    step = _prompt(max_prompt_tokens=4, max_answer_tokens=3)
    out = step(_tok_sample(task="ééé"))  # 3 characters, 6 byte-level tokens
    text = out["input_ids"][out["segment"] == 2].tolist()
    assert len(text) == 1 + 4 and step.counts["prompts_truncated"] == 1
    assert step.text_tokenizer.decode(text[1:]) == "éé"
    ok = step(_tok_sample(question="q?", answer="yes"))
    assert ok is not None and (ok["labels"] != -100).sum() == 3 + 1  # answer + <|im_end|>
    assert step(_tok_sample(question="q?", answer="yes!")) is None and step.counts["answers_skipped"] == 1
    with pytest.raises(ValueError, match="4 tokens > max_answer_tokens=3"):
        _prompt(max_answer_tokens=3, on_long_answer="error")(_tok_sample(question="q?", answer="yes!"))


def test_key_mapping_presets_and_contract_errors():
    km = KeyMapping.from_presets(["lerobot", "openpi"], ["observation.images.corner"], default_dataset="sim")
    img = np.zeros((8, 8, 3), np.uint8)
    out = km({"observation/image": img, "observation/state": np.zeros(3), "prompt": "go", "frame_index": 3})
    assert set(out) == {"observation.images.corner", "observation.state", "task", "dataset"}
    assert out["dataset"] == "sim"
    vqa = km(
        {"observation.images.main": img, "prompt": "what?", "task": "what?", "answer": "x", "dataset": "v"}
    )
    assert set(vqa) == {"observation.images.corner", "question", "answer", "dataset"}
    both = km({"observation.images.main": img, "question": "what?", "prompt": "what?", "answer": "x"})
    assert both["question"] == "what?" and "prompt" not in both  # wall-data's alias next to the question
    with pytest.raises(KeyError, match="both map to 'question'"):
        km({"observation.images.main": img, "question": "what?", "prompt": "other", "answer": "x"})
    contract = ObservationContract(
        ["observation.images.corner"], H, {"sim": {"state_dim": 3, "action_dim": 2}}
    )
    good = {**out}
    assert contract(good)["observation.state"].dtype == torch.float64  # wrapped, dtype kept
    with pytest.raises(KeyError, match="unknown keys \\['wrist'\\]"):
        contract({**good, "wrist": img})
    with pytest.raises(KeyError, match="lacks \\['observation.state'\\]"):
        contract({k: v for k, v in good.items() if k != "observation.state"})
    with pytest.raises(ValueError, match="has 5 dims, stats have 3"):
        contract({**good, "observation.state": np.zeros(5)})
    with pytest.raises(TypeError, match="'task' must be a str"):
        contract({**good, "task": 3})
    with pytest.raises(KeyError, match="unknown dataset / robot 'boat'"):
        contract({**good, "dataset": "boat"})
    published = contract.contract()
    assert published["robots"]["sim"]["observation"]["observation.state"] == "float [3]"
    assert published["robots"]["sim"]["action"] == f"float [{H}, 2]"


def test_as_tensor_read_only_and_negative_strides_copy_without_warning():
    """Arrays decoded from a wire frame are read-only: they are copied (no 'not writable' warning), values kept."""
    import warnings

    from wall_core.processing.base import as_tensor

    a = np.arange(12, dtype=np.uint8).reshape(3, 4)
    ro = a.copy()
    ro.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = as_tensor(ro, "observation.images.cam")
        f = as_tensor(a[::-1], "observation.images.cam")
    assert t.dtype == torch.uint8 and torch.equal(t, torch.as_tensor(a))
    assert torch.equal(f, torch.as_tensor(a[::-1].copy()))
    w = as_tensor(a, "x")
    assert w.data_ptr() == a.ctypes.data  # a writable array is wrapped, not copied
