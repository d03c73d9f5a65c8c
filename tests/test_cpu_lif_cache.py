"""The numba CPU kernel's disk cache: a process loads the kernels an earlier one compiled, wherever the
package lives.

Each test runs fresh interpreters (the cache matters across processes) with their own cache folder, so
each pays one compile of a forward and a backward kernel (seconds).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import asgl

pytest.importorskip("numba", reason="the CPU kernel needs numba")

PROBE = """
import json, sys, time
import numba
import torch
from asgl.kernels import cpu_lif
from asgl.neuron import lif_cpu_kernel
from asgl.neuron_models import NEURONS, summed_gradients
from asgl.spike import MaskDraw, SpikeSpec
from asgl.surrogates import SURROGATES

# numba's own start-up (its typing and code-generation context, about a second, paid once per process by
# whatever it runs first) is not the kernel's: a trivial uncached function takes it before the clock starts
numba.njit(lambda v: v + 1)(1)

spec = SpikeSpec(SURROGATES["sigmoid"], "asgl")
x = torch.randn(8, *map(int, sys.argv[1:]), generator=torch.Generator().manual_seed(0))

def lif_call():
    leaf = x.clone().requires_grad_()
    params = [torch.tensor(v, requires_grad=True) for v in (0.6, 0.8, 2.0)]
    start = time.perf_counter()
    lif_cpu_kernel(leaf, *params, MaskDraw(0.3, 7), spec).sum().backward()
    return time.perf_counter() - start

first, second = lif_call(), lif_call()
lif, float32 = NEURONS["lif"], cpu_lif.np.float32
needs = summed_gradients(lif, spec, (True, True, True))  # the sums the call needed: width, decay, threshold
stats = [cpu_lif.forward_kernel(lif, spec, False, float32).stats]
stats += [cpu_lif.backward_kernel(lif, spec, False, needs, float32).stats]
print(json.dumps({
    "first": first, "second": second, "module": cpu_lif.__file__, "cache": stats[0].cache_path,
    "hits": sum(sum(s.cache_hits.values()) for s in stats),
    "misses": sum(sum(s.cache_misses.values()) for s in stats),
}))
"""


def probe(env: dict[str, str], *step_shape: int, cwd: Path | None = None) -> dict:
    """Two forward + backward calls of one ASGL LIF layer in a fresh interpreter: their seconds, and how
    many of its two kernels were loaded from the disk cache (hits) or compiled (misses)."""
    args = [sys.executable, "-c", PROBE, *map(str, step_shape)]
    done = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.splitlines()[-1])


def cache_files(root: Path) -> dict[str, str]:
    """numba's cache files under ``root``: relative path -> sha256 of the content."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.suffix in (".nbi", ".nbc")
    }


@pytest.mark.slow
def test_a_second_process_loads_the_kernels_and_compiles_nothing(tmp_path):
    cache = tmp_path / "numba"
    # a user's process: torch's own thread count (not the one-thread setting of the test workers)
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"} | {"NUMBA_CACHE_DIR": str(cache)}
    first = probe(env, 2, 64)
    written = cache_files(cache)
    assert (first["hits"], first["misses"]) == (0, 2) and written  # the first process compiled both
    # the second process's calls do enough work (8 x 64 x 32768 elements, forward and backward) to be timed
    second = probe(env, 64, 32768)
    assert (second["hits"], second["misses"]) == (2, 0)
    assert cache_files(cache) == written  # nothing added or rewritten
    assert second["first"] < 5 * second["second"], second


@pytest.mark.skipif(sys.platform != "linux", reason="numba's user cache folder follows XDG_CACHE_HOME on Linux")
@pytest.mark.slow
def test_a_read_only_package_caches_in_the_users_cache_folder(tmp_path):
    """As in a system-wide install: the package folder cannot be written, so numba puts the kernels in the
    user's cache folder ($XDG_CACHE_HOME/numba) and a later process loads them from there."""
    site = tmp_path / "site"
    shutil.copytree(Path(asgl.__file__).parent, site / "asgl", ignore=shutil.ignore_patterns("__pycache__"))
    (site / "asgl" / "kernels" / "__pycache__").write_text("")  # a file, not a folder: unwritable even for root
    for folder in [site, *(p for p in site.rglob("*") if p.is_dir())]:
        folder.chmod(0o555)
    user_cache = tmp_path / "cache"
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env |= {"PYTHONPATH": str(site), "XDG_CACHE_HOME": str(user_cache), "PYTHONDONTWRITEBYTECODE": "1"}
    runs = [probe(env, 2, 64, cwd=tmp_path) for _ in range(2)]  # not the checkout's folder: it is on sys.path
    assert Path(runs[0]["module"]).is_relative_to(site)
    assert Path(runs[0]["cache"]).is_relative_to(user_cache / "numba")
    assert cache_files(user_cache) and not cache_files(site)
    assert [(r["hits"], r["misses"]) for r in runs] == [(0, 2), (2, 0)]
