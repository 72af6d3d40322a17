"""perf plots (PNG files from summaries), the benchmark's command line and its llama-server."""

from __future__ import annotations

from pathlib import Path

import pytest

from perf.bench import llama_server_binary
from perf.plan import DEFAULT_CONCURRENCY, DEFAULT_SERVERS, make_plan, parse_args
from perf.plots import write_plots
from perf.report import ceiling_line
from perf.servers import ServerConfig, llama_server_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

SUMMARIES = {
    "llmserve": {
        "c1.aggregate_tok_s": 80.0,
        "c4.aggregate_tok_s": 150.0,
        "c1.ttft_p50_ms": 30.0,
        "c4.ttft_p50_ms": 90.0,
        "multiturn.ttft_turn1_ms": 850.0,
        "multiturn.ttft_turn2_ms": 60.0,
        "interleaved.ttft_turn1_ms": 870.0,
        "interleaved.ttft_turn2_ms": 70.0,
    },
    "llama_cpp_server": {"c1.aggregate_tok_s": 70.0, "c4.aggregate_tok_s": 70.0},
}


def test_plots_are_png_files_named_with_the_prefix(tmp_path: Path) -> None:
    """Each plot with data is written as <prefix><name>.png and is a PNG."""
    written = write_plots(SUMMARIES, list(SUMMARIES), [1, 4], 2, tmp_path, "run-")
    names = sorted(p.name for p in written)
    assert names == ["run-tokens-per-s.png", "run-ttft-concurrency.png", "run-ttft-per-turn.png"]
    for path in written:
        assert path.read_bytes().startswith(PNG_MAGIC)


def test_plots_without_data_are_not_written(tmp_path: Path) -> None:
    """A run of only the prefill workload draws no empty concurrency or turn plots."""
    assert write_plots({"llmserve": {}}, ["llmserve"], [1, 4], 5, tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_defaults_cover_the_issue_sweep_and_every_peer() -> None:
    """Concurrency 1-16 with 16 slots; llama.cpp's llama-server is a default peer."""
    args = parse_args([])
    assert args.concurrency == DEFAULT_CONCURRENCY == [1, 2, 4, 8, 16]
    assert args.parallel >= max(args.concurrency)
    assert args.servers == DEFAULT_SERVERS
    assert "llama_server" in args.servers
    assert args.workloads == ["decode", "prefill", "multiturn", "interleaved", "mixed", "overhead"]


def test_quick_mode_shrinks_repetitions_not_the_sweep() -> None:
    """--quick lowers repetitions and the time limit; explicit values still win."""
    full = make_plan(parse_args([]))
    quick = make_plan(parse_args(["--quick", "--prefill-reps", "2"]))
    assert quick.time_limit < full.time_limit
    assert quick.rounds == 1
    assert quick.prefill_reps == 2
    assert quick.mixed.long == 2
    assert quick.concurrency == full.concurrency


def test_prompts_longer_than_a_sequence_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    """A 4000-token prompt does not fit 4096 tokens per sequence with the margin."""
    with pytest.raises(SystemExit):
        parse_args(["--prefill-tokens", "1000,4000"])
    assert "do not fit --ctx 4096" in capsys.readouterr().err


def test_lists_are_parsed_and_checked() -> None:
    """Comma lists of servers, workloads and integers; unknown names are errors."""
    args = parse_args(["--servers", "llmserve", "--workloads", "mixed,prefill", "--plots-dir", "d"])
    assert args.servers == ["llmserve"]
    assert args.workloads == ["prefill", "mixed"]
    assert args.plots_dir == Path("d")
    with pytest.raises(SystemExit):
        parse_args(["--concurrency", "1,0"])
    with pytest.raises(SystemExit):
        parse_args(["--servers", "vllm"])


def test_ceiling_line_states_llmserve_fraction() -> None:
    """The markdown names bandwidth, bytes per token, the ceiling and llmserve's share of it."""
    ceiling = {"bandwidth_gb_s": 20.0, "threads": 2, "bytes_per_token": 250e6, "tok_s": 80.0}
    line = ceiling_line(ceiling, {"single.ceiling_fraction": 0.9, "single.decode_tok_s_best": 72})
    assert "20.0 GB/s" in line
    assert "250.0 MB" in line
    assert "80.0 tok/s" in line
    assert "72.0 tok/s, is 0.90 of it" in line
    assert ceiling_line(None, {}) == ""


def test_llama_server_binary_given_or_not_needed_builds_nothing() -> None:
    """--llama-server-bin wins; without llama_server in --servers nothing is built."""
    given = Path("/opt/llama-server")
    assert llama_server_binary(given, ["llama_server"]) == given
    assert llama_server_binary(None, ["llmserve", "llama_cpp_server"]) is None


def test_llama_server_context_is_split_among_its_slots() -> None:
    """--ctx-size is per-sequence context x slots, as llama-server divides it by --parallel."""
    config = ServerConfig(
        model_path=Path("missing.gguf"),
        threads=2,
        ctx_per_sequence=4096,
        parallel=16,
        llama_server_bin=Path("/opt/llama-server"),
    )
    command = llama_server_spec(config, 8000, "decode").command
    assert command[command.index("--ctx-size") + 1] == str(16 * 4096)
    assert command[command.index("--parallel") + 1] == "16"
    # An unreadable GGUF gets no template file: the server's own start reports the problem.
    assert "--chat-template-file" not in command
