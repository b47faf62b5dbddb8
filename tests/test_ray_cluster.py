"""A real two-node Ray cluster: ``dynafolio run --executor ray --ray-address`` writes the
files a serial run writes, byte for byte.

The head and the worker are separate ``ray start --block`` processes, each with its own
temporary directory and its own working directory, and the driver is a third process (the
CLI) in a third directory. A strategy loads a saved agent by a path relative to the
driver's directory: the nodes' workers, started in their own directories, could not open
it, so the run passes only if the agent travels as bytes (``PPOSpec``).

Slow (a cluster takes seconds to start on two cores): run with ``pytest -m slow``.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from conftest import make_prices
from dynafolio.rl.settings import PPOSettings
from dynafolio.rl.training import train_agent

pytest.importorskip("ray")
pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
#: Written by the run itself with the time, the command line and the executor: not results.
NOT_RESULTS = {"manifest.json", "report.html"}

CONFIG = """\
n_seeds: 2
strategies:
  - kind: equal_weight
  - kind: forecast_topk
    k: 2
    forecaster: {model: univariate_lstm, params: {lookback: 6, hidden: 4, epochs: 2}}
  - kind: ppo_topk
    name: Saved PPO Top-2
    k: 2
    lookback: 4
    agent_path: agent.zip
"""

#: Waits, in a fresh process, until the cluster at argv[1] has argv[2] live nodes.
WAIT_FOR_NODES = """\
import sys, time
import ray

ray.init(address=sys.argv[1], log_to_driver=False)
deadline = time.monotonic() + 120
while True:
    alive = [n for n in ray.nodes() if n["Alive"]]
    if len(alive) >= int(sys.argv[2]):
        print(sum(n["Resources"].get("CPU", 0) for n in alive))
        break
    if time.monotonic() > deadline:
        sys.exit(f"only {len(alive)} of {sys.argv[2]} Ray nodes came up within 120 s")
    time.sleep(0.5)
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _start_node(workdir: Path, temp: Path, args: list[str], env: dict) -> subprocess.Popen:
    """``ray start --block`` in ``workdir``: the node lives as long as this process. Its own
    session (process group), so that stopping it can reach every process it started and
    nothing else."""
    workdir.mkdir(parents=True)
    log = (workdir / "ray-start.log").open("wb")
    command = [str(BIN / "ray"), "start", "--block", "--num-cpus", "1", "--disable-usage-stats"]
    try:
        return subprocess.Popen(
            [*command, "--temp-dir", str(temp), *args],
            cwd=workdir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    finally:
        log.close()


def _stop_node(node: subprocess.Popen) -> None:
    """SIGTERM makes ``ray start --block`` stop the node's processes (its exit handler);
    whatever is left in its process group after 30 s is killed."""
    if node.poll() is None:
        node.terminate()
        try:
            node.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(node.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass  # the group is gone: every process of the node has exited
    node.wait(timeout=30)


@contextmanager
def ray_cluster(root: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A head node and a worker node of one CPU each, as separate ``ray start`` processes
    in ``root/head`` and ``root/worker``; yields the head's address and the environment a
    driver needs (the cluster's authentication token). Both nodes are stopped on exit."""
    env = {
        **os.environ,
        # Ray's token authentication, with a token of this cluster's own (nothing is read
        # from or written to ~/.ray).
        "RAY_AUTH_MODE": "token",
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
    }
    env.pop("RAY_ADDRESS", None)
    address = f"127.0.0.1:{_free_port()}"
    # Ray's socket paths must fit in 107 bytes: pytest's tmp_path is too deep for them.
    temps = [Path(tempfile.mkdtemp(dir="/tmp", prefix="dfr")) for _ in range(2)]
    nodes = []
    try:
        port = address.rsplit(":", 1)[1]
        head_args = ["--head", "--port", port, "--include-dashboard=false"]
        nodes.append(_start_node(root / "head", temps[0], head_args, env))
        nodes.append(_start_node(root / "worker", temps[1], ["--address", address], env))
        waited = subprocess.run(
            [sys.executable, "-c", WAIT_FOR_NODES, address, "2"],
            env=env,
            cwd=root,
            capture_output=True,
            text=True,
            timeout=180,
        )
        logs = {
            name: (root / name / "ray-start.log").read_text(errors="replace")[-3000:]
            for name in ("head", "worker")
        }
        assert waited.returncode == 0, (waited.stderr[-3000:], logs)
        assert float(waited.stdout.split()[-1]) == 2.0, waited.stdout
        yield address, env
    finally:
        for node in reversed(nodes):
            _stop_node(node)
        leftovers = _processes_using(temps)
        for temp in temps:
            shutil.rmtree(temp, ignore_errors=True)
    assert not leftovers, f"Ray processes outlived their node: {leftovers}"


def _processes_using(temps: list[Path], wait: float = 15.0) -> list[str]:
    """Command lines of live processes that name one of the nodes' temporary directories
    (every Ray process of a node does), after waiting up to ``wait`` s for them to exit."""
    deadline = time.monotonic() + wait
    while True:
        found = []
        for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
            try:
                text = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue  # exited meanwhile
            if any(str(temp) in text for temp in temps):
                found.append(text[:200])
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.5)


def _run(driver: Path, out: Path, env: dict[str, str], *executor: str) -> Path:
    """``dynafolio run`` in ``driver`` (the config names the agent relative to it); the run
    directory it writes under ``out``."""
    result = subprocess.run(
        [
            str(BIN / "dynafolio"),
            "run",
            "--data",
            "prices.csv",
            "--config",
            "c.yaml",
            "--out",
            str(out),
            *executor,
        ],
        cwd=driver,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, (result.stdout[-3000:], result.stderr[-3000:])
    (run_dir,) = out.iterdir()
    return run_dir


def _results(run_dir: Path) -> dict[str, bytes]:
    """Every file of a run directory but the run's own record, by relative path; a zip (a
    saved forecaster) by its members, since zip headers hold the time they were written."""
    files = {}
    for path in sorted(run_dir.rglob("*")):
        name = path.relative_to(run_dir).as_posix()
        if not path.is_file() or name in NOT_RESULTS:
            continue
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    files[f"{name}/{member}"] = archive.read(member)
        else:
            files[name] = path.read_bytes()
    return files


def test_a_two_node_cluster_writes_the_serial_results_byte_for_byte(tmp_path):
    driver = tmp_path / "driver"
    driver.mkdir()
    prices = make_prices(n_periods=150, n_assets=4, late=0)
    prices.to_csv(driver / "prices.csv", index_label="date")
    tiny = PPOSettings(
        n_steps=32,
        batch_size=32,
        n_epochs=2,
        total_timesteps=64,
        n_envs=2,
        episode_length=10,
        eval_every=64,
        net_arch=(8,),
    )
    returns = prices.pct_change(fill_method=None).to_numpy()[:100]
    train_agent(returns, k=2, lookback=4, settings=tiny, seed=0).save(driver / "agent.zip")
    (driver / "c.yaml").write_text(CONFIG)

    serial = _run(driver, tmp_path / "serial", dict(os.environ), "--executor", "serial")
    with ray_cluster(tmp_path / "nodes") as (address, env):
        for node in ("head", "worker"):
            # The workers run in these directories: agent.zip is not there to open.
            assert not (tmp_path / "nodes" / node / "agent.zip").exists()
        on_ray = _run(driver, tmp_path / "ray", env, "--executor", "ray", "--ray-address", address)

    expected, got = _results(serial), _results(on_ray)
    assert {"metrics.csv", "net_returns.csv", "weights/saved-ppo-top-2-seed1.csv"} <= set(got)
    assert sorted(got) == sorted(expected)
    differ = [name for name in expected if got[name] != expected[name]]
    assert not differ, differ
