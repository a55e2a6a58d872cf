"""The commands in README.md and docs/*.md work as written.

* Every ``chunkwise <command> ...`` line of a code block parses with that command's own
  flag parser (unknown flags and bad values fail; a path that only an earlier, longer step
  would create is fine). Where a block shows the error a command prints, the command
  really prints it.
* The README's table of commands runs as a chain (collect -> train -> eval -> sweep ->
  serve -> eval --server), each command read from the README and reduced (fewer episodes
  and steps), in a scratch directory.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

CONFIGS = {  # command -> its flag dataclass
    "collect": "chunkwise.data.collect:CollectConfig",
    "train": "chunkwise.training.train:TrainConfig",
    "eval": "chunkwise.eval.run:EvalConfig",
    "sweep": "chunkwise.eval.sweep:SweepConfig",
    "serve": "chunkwise.serving.server:ServeConfig",
    "rl": "chunkwise.rl.train:RLConfig",
    "demo": "chunkwise.demo:DemoConfig",
    "bench scheduler": "chunkwise.eval.bench_scheduler:SchedulerBenchConfig",
    "bench serve": "chunkwise.serving.bench_serve:BenchServeConfig",
    "bench rtc": "chunkwise.policies.flow.bench_rtc:BenchRTCConfig",
    "bench clocks": "chunkwise.eval.clocks:ClocksConfig",
    "bench fuzz": "chunkwise.serving.fuzz:FuzzConfig",
    "bench soak": "chunkwise.serving.chaos:SoakConfig",
}
# values a doc line leaves to the reader
TEMPLATES = {"$T": "push-v3", "$task": "push-v3", "$R": "run", "$1": "0", "$2": "2"}
OPTIONAL_MISSING = re.compile(r"needs \w+, which is not installed: pip install")
MISSING_PATH = re.compile(r"does not exist|is not a directory|not a checkpoint|no config\.json|is not a file|No such file")


def doc_lines() -> list[tuple[str, int, str, str | None]]:
    """(doc, line number, command, the error line printed right after it if any)."""
    out = []
    for path in DOCS:
        text = path.read_text()
        for m in re.finditer(r"```[a-z]*\n(.*?)```", text, re.S):
            first_line = text[: m.start(1)].count("\n") + 1
            raw = m.group(1).split("\n")
            lines: list[tuple[int, str]] = []
            i = 0
            while i < len(raw):  # join "\" continuations
                start, cur = i, raw[i]
                while cur.rstrip().endswith("\\") and i + 1 < len(raw):
                    i += 1
                    cur = cur.rstrip()[:-1] + " " + raw[i].strip()
                lines.append((first_line + start, cur.strip()))
                i += 1
            for k, (lineno, line) in enumerate(lines):
                cmd = re.sub(r"^\$ ", "", line)
                cmd = re.sub(r"^((OMP_NUM_THREADS|MUJOCO_GL)=\S+ |nice -n \d+ )+", "", cmd)
                if not re.match(r"chunkwise [a-z]", cmd) or re.match(r"chunkwise [\w ]+:", cmd):
                    continue  # not a command (an output line)
                nxt = re.sub(r"^\$ ", "", lines[k + 1][1]) if k + 1 < len(lines) else ""
                error = nxt if re.match(r"chunkwise [\w ]+: error: ", nxt) else None
                out.append((path.name, lineno, cmd, error))
    return out


def split(cmd: str) -> tuple[str, list[str]]:
    cmd = cmd.split("  #")[0].split(" # ")[0]
    for k, v in TEMPLATES.items():
        cmd = cmd.replace(k, v)
    words = shlex.split(cmd)[1:]
    name = " ".join(words[:2]) if words[0] == "bench" else words[0]
    return name, words[2:] if words[0] == "bench" else words[1:]


LINES = doc_lines()


def test_every_benchmark_documented_in_docs_is_checked():
    from chunkwise.bench import BENCHMARKS

    documented = {split(c)[0] for _, _, c, _ in LINES if c.startswith("chunkwise bench ")}
    assert documented <= set(CONFIGS), f"add to CONFIGS: {sorted(documented - set(CONFIGS))}"
    assert {f"bench {b}" for b in BENCHMARKS} & documented == documented


def test_the_docs_have_commands():
    assert len(LINES) > 30 and {split(c)[0] for _, _, c, _ in LINES} >= {"collect", "train", "eval", "sweep", "serve"}


@pytest.mark.parametrize("doc, lineno, cmd, error", LINES, ids=[f"{d}:{n}" for d, n, _, _ in LINES])
def test_documented_command_parses(doc, lineno, cmd, error, capsys):
    import draccus

    if "..." in cmd or "[--" in cmd:
        pytest.skip("a template with elided flags")
    name, argv = split(cmd)
    assert name in CONFIGS, f"{doc}:{lineno}: unknown command {name!r}"
    module, cls = CONFIGS[name].split(":")
    config = getattr(importlib.import_module(module), cls)
    if error is not None:  # the doc shows what the command prints: it must print that
        exists = re.search(r"(\S+) already exists", error)  # shown for a second run
        made = exists is not None and not Path(exists.group(1)).exists()
        if made:  # a previous run's output
            Path(exists.group(1)).mkdir(parents=True)
            (Path(exists.group(1)) / "meta").mkdir()
        try:
            main = importlib.import_module(module).main
            assert main(argv) != 0, f"{doc}:{lineno}: {cmd} should fail"
        finally:
            if made:
                shutil.rmtree(exists.group(1))
        got = capsys.readouterr().err.strip().splitlines()[-1]
        same = got.startswith(error[:-3].rstrip()) if error.endswith("...") else got == error
        assert same, f"{doc}:{lineno}: documented\n  {error}\nbut the command prints\n  {got}"
        return
    try:
        draccus.parse(config, args=argv)
    except SystemExit as e:  # argparse: unknown flag
        pytest.fail(f"{doc}:{lineno}: `{cmd}` does not parse ({capsys.readouterr().err.strip()[-300:]})")
        raise e
    except Exception as e:  # noqa: BLE001
        msg = str(e) + " " + str(e.__cause__ or "")
        if OPTIONAL_MISSING.search(msg):  # the docs show an extra's command; it parses, the extra is absent here
            pytest.skip(msg.strip()[:200])
        if not MISSING_PATH.search(msg):
            pytest.fail(f"{doc}:{lineno}: `{cmd}` is rejected: {msg.strip()[:300]}")


# ---------------------------------------------------------------- the README chain

def _reduce(name: str, argv: list[str]) -> list[str]:
    """Fewer episodes/steps/cells; the flags stay the README's."""
    out = []
    for a in argv:
        key, _, val = a.partition("=")
        if key == "--n_episodes":
            a = f"{key}=2"
        elif key == "--steps":
            a = f"{key}=20"
        elif key in ("--tasks",):
            a = f"{key}={val.split(',')[0]}"
        elif key in ("--delays", "--strategies"):
            a = f"{key}={','.join(val.split(',')[:2])}"
        out.append(a)
    if name in ("eval", "sweep"):
        out += ["--env.max_episode_steps=40", "--n_workers=1"] if name == "sweep" else ["--env.max_episode_steps=40"]
    return out


def readme_table_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    table = text[text.index("## What is where"): text.index("## Results so far")]
    cmds = []
    for row in table.splitlines():
        if not row.startswith("|"):
            continue
        cells = row.split("|")
        found = re.findall(r"`(chunkwise [^`]+)`", cells[2] if len(cells) > 2 else "")
        if found and "..." not in found[0]:
            cmds.append(found[0])
    return cmds


def test_readme_table_runs_as_a_chain(tmp_path, monkeypatch):
    from chunkwise.serving.process import ServerProcess

    cmds = readme_table_commands()
    names = [split(c)[0] for c in cmds]
    assert names[:6] == ["collect", "train", "eval", "sweep", "serve", "eval"], names
    monkeypatch.chdir(tmp_path)
    for cmd in cmds[:4]:
        name, argv = split(cmd)
        main = importlib.import_module(CONFIGS[name].split(":")[0]).main
        assert main(_reduce(name, argv)) == 0, f"README: `{cmd}` failed (reduced: {_reduce(name, argv)})"
    _, serve_argv = split(cmds[4])
    serve_argv = [a for a in serve_argv if not a.startswith("--port")]
    with ServerProcess(serve_argv, lifetime_s=120) as srv:
        _, argv = split(cmds[5])
        argv = [f"--server={srv.address}" if a.startswith("--server=") else a for a in argv] + ["--time_scale=4"]
        from chunkwise.eval.run import main

        assert main(_reduce("eval", argv)) == 0, f"README: `{cmds[5]}` failed against {srv.address}"
