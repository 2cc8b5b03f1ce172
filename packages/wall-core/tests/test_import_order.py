"""MuJoCo (MetaWorld) imported before wall-core and Lightning (which pull in triton) must not crash: the
import-order guard of wall_robots.sim_metaworld.preload_triton, checked in a fresh interpreter."""

import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("metaworld")


def test_metaworld_then_lightning_import_does_not_crash(tmp_path):
    script = textwrap.dedent(
        """
        import wall_robots as wr
        env = wr.MetaWorldEnv("reach-v3", image_size=16)
        obs = env.reset(variant=0)
        assert obs["observation.images.corner"].shape == (16, 16, 3)
        import wall_core, lightning  # pulls in triton after MuJoCo is loaded
        print("imports ok")
        """
    )
    env = {**os.environ, "MUJOCO_GL": "osmesa", "PYOPENGL_PLATFORM": "osmesa"}
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=env)
    assert out.returncode == 0, f"rc={out.returncode}\n{out.stderr[-2000:]}"
    assert "imports ok" in out.stdout
