"""The recovery tests' kill hook ships in the join code, the root join
helper's included: one stray variable must not kill every join."""

import os
import signal
import subprocess
import sys

import pytest

from wgmesh_common.join import KILL_POINT_VARIABLE, TEST_HOOKS_VARIABLE, kill_point_environment

REACH = "from wgmesh_common.join import kill_point; kill_point('written'); print('alive')"


def reach_written(extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in (KILL_POINT_VARIABLE, TEST_HOOKS_VARIABLE)}
    return subprocess.run([sys.executable, "-c", REACH], env={**env, **extra}, capture_output=True, text=True,
                          timeout=30)


@pytest.mark.parametrize("extra", [
    {KILL_POINT_VARIABLE: "written"},
    {KILL_POINT_VARIABLE: "written", TEST_HOOKS_VARIABLE: "yes"},
    {**kill_point_environment("started")},
    {TEST_HOOKS_VARIABLE: "1"},
], ids=["stray-kill-at", "hooks-not-1", "other-point", "hooks-alone"])
def test_the_hook_leaves_a_process_alone_without_both_variables(extra):
    result = reach_written(extra)
    assert result.returncode == 0 and result.stdout == "alive\n", result.stderr


def test_the_hook_kills_at_its_point_with_both_variables():
    assert reach_written(kill_point_environment("written")).returncode == -signal.SIGKILL
