"""The CPU emulator of the CUDA kernels (tests/cuda_emu) catches what it claims to catch.

Each probe kernel (tests/cuda_emu/selftest.cu) has one bug a GPU would make visible only
sometimes, or fail on: a missing barrier (whichever neighbour a thread reads), a barrier
not every thread reaches, threads at different barriers, shared memory read before any
thread of the block wrote it, a grid or a block over CUDA's limits, too much shared
memory. The emulator must fail each of them, and pass the fixed kernel.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np
import pytest
from cuda_emu.emulator import (
    FORWARD,
    RANDOM,
    REVERSED,
    EmulatedRunner,
    LaunchError,
    build_emulator,
    configure,
)

from sdk.cuda import nvrtc
from sdk.cuda.launch import pointer
from sdk.features import DEFAULT_FEATURES

BARRIER, BAD_CONFIG, SHARED_MEMORY = 1, 2, 3  # emu::Status


@pytest.fixture(scope="module")
def runner(tmp_path_factory: pytest.TempPathFactory) -> EmulatedRunner:
    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES),
                             tmp_path_factory.mktemp("cuda_emu"))
    return EmulatedRunner(library)


@pytest.fixture(autouse=True)
def random_schedule(runner: EmulatedRunner) -> None:
    configure(runner.module._library, RANDOM, seed=7)


def shift(runner: EmulatedRunner, values: np.ndarray, offset: int, use_barrier: int
          ) -> np.ndarray:
    out = np.zeros_like(values)
    runner.module.launch("selftest_shift", (values.shape[0], 1, 1), (values.shape[1], 1, 1),
                         [pointer(values.ctypes.data), pointer(out.ctypes.data),
                          ctypes.c_int(offset), ctypes.c_int(use_barrier)])
    return out


@pytest.mark.parametrize("offset", [1, -1])
def test_a_missing_barrier_is_caught_whichever_neighbour_is_read(
        runner: EmulatedRunner, rng: np.random.Generator, offset: int) -> None:
    values = rng.uniform(1, 2, (3, 128)).astype(np.float32)
    want = np.roll(values, -offset, axis=1)
    np.testing.assert_array_equal(shift(runner, values, offset, use_barrier=1), want)
    # Without the barrier some threads read a slot before its owner wrote it: stale data
    # (NaN from the per-block fill, or the other block's value never: shared is fresh).
    broken = shift(runner, values, offset, use_barrier=0)
    assert (broken != want).mean() > 0.2


def test_fixed_orders_each_miss_one_direction_the_random_order_misses_neither(
        runner: EmulatedRunner, rng: np.random.Generator) -> None:
    """Why the order is shuffled: the old fixed 0..n-1 order passed a kernel whose thread t
    reads thread t-1's unsynchronised write."""
    values = rng.uniform(1, 2, (1, 64)).astype(np.float32)
    library = runner.module._library
    configure(library, FORWARD)
    np.testing.assert_array_equal(shift(runner, values, -1, 0)[0, 1:],
                                  np.roll(values, 1, axis=1)[0, 1:])  # the blind spot
    configure(library, REVERSED)
    np.testing.assert_array_equal(shift(runner, values, 1, 0)[0, :-1],
                                  np.roll(values, -1, axis=1)[0, :-1])  # its mirror image
    configure(library, RANDOM, seed=3)
    for offset in (1, -1):
        assert not np.array_equal(shift(runner, values, offset, 0),
                                  np.roll(values, -offset, axis=1))


def test_a_barrier_some_threads_skip_fails_the_launch(runner: EmulatedRunner) -> None:
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(LaunchError, match="not reached by every thread") as error:
        runner.module.launch("selftest_divergent_barrier", (1, 1, 1), (64, 1, 1),
                             [pointer(out.ctypes.data)])
    assert error.value.status == BARRIER


def test_threads_at_different_barriers_fail_the_launch(runner: EmulatedRunner) -> None:
    out = np.zeros(64, dtype=np.float32)
    with pytest.raises(LaunchError, match=r"different __syncthreads\(\) call sites: "
                                          r".*selftest.cu:\d+ .*selftest.cu:\d+"):
        runner.module.launch("selftest_split_barrier", (1, 1, 1), (64, 1, 1),
                             [pointer(out.ctypes.data)])


def test_shared_memory_is_fresh_for_every_block(runner: EmulatedRunner) -> None:
    out = np.zeros(4, dtype=np.float32)
    args = [pointer(out.ctypes.data), ctypes.c_int(1)]
    runner.module.launch("selftest_uninitialised_shared", (4, 1, 1), (32, 1, 1), args)
    np.testing.assert_array_equal(out, [1, 2, 3, 4])
    args[1] = ctypes.c_int(0)  # only block 0 writes: the others read unwritten memory
    runner.module.launch("selftest_uninitialised_shared", (4, 1, 1), (32, 1, 1), args)
    assert out[0] == 1 and np.isnan(out[1:]).all()


@pytest.mark.parametrize("grid, block", [
    ((1, 70000, 1), (32, 1, 1)),  # gridDim.y > 65535: the pose imaging bug of the review
    ((1, 1, 65536), (32, 1, 1)),
    ((1, 1, 1), (1025, 1, 1)),
    ((1, 1, 1), (1, 1, 65)),
    ((0, 1, 1), (32, 1, 1)),
])
def test_launches_over_the_grid_and_block_limits_fail(
        runner: EmulatedRunner, grid: tuple[int, int, int], block: tuple[int, int, int]
) -> None:
    out = np.zeros(4096, dtype=np.float32)
    with pytest.raises(LaunchError, match="invalid launch configuration") as error:
        runner.module.launch("selftest_divergent_barrier", grid, block,
                             [pointer(out.ctypes.data)])
    assert error.value.status == BAD_CONFIG
    assert not out.any()  # nothing ran


def test_dynamic_shared_memory_is_limited_unless_the_kernel_opted_in(
        runner: EmulatedRunner) -> None:
    out = np.zeros(256, dtype=np.float32)
    args = [pointer(out.ctypes.data)]
    runner.module.launch("selftest_dynamic_shared", (1, 1, 1), (256, 1, 1), args,
                         shared_bytes=256 * 4)
    np.testing.assert_array_equal(out, np.arange(256, 0, -1))
    # 4100 B of static shared memory in selftest.cu + 48 KiB dynamic > 48 KiB
    with pytest.raises(LaunchError, match="shared memory exceed") as error:
        runner.module.launch("selftest_dynamic_shared", (1, 1, 1), (256, 1, 1), args,
                             shared_bytes=48 * 1024)
    assert error.value.status == SHARED_MEMORY
    runner.module.set_max_dynamic_shared("selftest_dynamic_shared", 64 * 1024)
    runner.module.launch("selftest_dynamic_shared", (1, 1, 1), (256, 1, 1), args,
                         shared_bytes=48 * 1024)
    with pytest.raises(LaunchError, match="shared memory exceed"):  # over the opt-in
        runner.module.launch("selftest_dynamic_shared", (1, 1, 1), (256, 1, 1), args,
                             shared_bytes=70 * 1024)


def test_static_shared_memory_is_measured_per_source_file(tmp_path: Path) -> None:
    """selftest.cu declares 1024 + 1 floats of __shared__; the SDK kernels use dynamic
    shared memory only (sized per launch by the host), so their sections are absent."""
    import subprocess

    library = build_emulator(nvrtc.feature_defines(DEFAULT_FEATURES), tmp_path)
    symbols = subprocess.run(["nm", str(library)], capture_output=True, text=True).stdout
    table = {line.split()[-1]: int(line.split()[0], 16) for line in symbols.splitlines()
             if "emu_shared_" in line}
    size = table["__stop_emu_shared_selftest"] - table["__start_emu_shared_selftest"]
    assert 4100 <= size <= 4100 + 64  # plus alignment padding
    assert "__start_emu_shared_mfcc" not in table and "__start_emu_shared_pose" not in table
