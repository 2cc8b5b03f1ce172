"""The canonical layout: named robot fields land in their 26-D slots, extras go after them, misfits are errors."""

import numpy as np
import pytest

import wall_data as wd


def test_aloha_and_sawyer_fields_take_their_canonical_slots():
    reg = wd.canonical_registry(state_width=64, action_width=26)
    aloha, sawyer = reg.get("aloha_bimanual"), reg.get("metaworld_sawyer")
    left, right = list(range(6)), list(range(10, 16))
    assert aloha.action_slots == (*left, 9, *right, 19) and aloha.state_slots == aloha.action_slots
    assert wd.CANONICAL_FIELDS[9] == "left_gripper" and wd.CANONICAL_FIELDS[19] == "right_gripper"
    assert sawyer.action_slots == (0, 1, 2, 9)
    # hand xyz and gripper in the left block; the 35 object/goal dims follow the 26 canonical slots in order
    assert sawyer.state_slots == (0, 1, 2, 9, *range(26, 61))
    space = wd.PaddedSpace(64, 26)
    a, mask = space.pad_action(np.arange(1, 15, dtype=np.float32), aloha)
    assert np.flatnonzero(mask).tolist() == [*left, 9, *right, 19]
    assert a[9] == 7 and a[19] == 14 and a[10] == 8 and a[20:].sum() == 0  # grippers, right waist, no head
    np.testing.assert_array_equal(space.unpad_action(a, aloha), np.arange(1, 15))
    s, smask = space.pad_state(np.arange(39, dtype=np.float32), sawyer)
    assert smask.sum() == 39 and s[9] == 3 and s[26] == 4 and s[60] == 38 and not smask[10:26].any()


def test_misfits_are_clear_errors():
    with pytest.raises(ValueError, match="need a state space of at least 61 dims"):
        wd.canonical_registry(state_width=40, robots=["metaworld_sawyer"])
    wd.canonical_registry(state_width=26, robots=["aloha_bimanual"])  # 14 joints fit the 26 slots
    with pytest.raises(ValueError, match="at least 26 dims"):
        wd.CanonicalLayout(20)
    spec = wd.EmbodimentSpec("two", ("a", "b"), ("a", "b"))
    ok = {"a": "head.0", "b": "head.1"}
    assert wd.place_canonical(spec, ok, {"a": "lift", "b": None}, action_width=27).action_slots == (22, 26)
    with pytest.raises(ValueError, match="several dims map to the canonical fields"):
        wd.place_canonical(spec, ok, {"a": "lift", "b": "lift"})
    with pytest.raises(ValueError, match="unknown canonical field 'elbow'"):
        wd.place_canonical(spec, ok, {"a": "elbow", "b": "lift"})
    with pytest.raises(ValueError, match=r"names dims \['z'\]"):
        wd.place_canonical(spec, {**ok, "z": "lift"}, ok)
    with pytest.raises(KeyError, match="no canonical map"):
        wd.canonical_registry(robots=["ur5"])
