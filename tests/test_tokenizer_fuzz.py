"""A short libFuzzer run of the C tokenizer under ASan + UBSan (fuzz/README.md).

Skipped when no clang with libFuzzer is installed. ECOMLM_FUZZ_SECONDS sets
the duration (default 30).
"""

import os
import shutil
import subprocess

import pytest

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def test_fuzz_tokenizer_smoke(tmp_path):
    cc = shutil.which("clang") or shutil.which("clang-14")
    if cc is None:
        pytest.skip("clang is not installed")
    exe = str(tmp_path / "fuzz_tokenizer")
    build = subprocess.run(["sh", os.path.join(ROOT, "fuzz", "build_tokenizer.sh"), exe],
                           capture_output=True, text=True, env=dict(os.environ, CC=cc))
    if build.returncode != 0:
        if "fuzzer" in build.stderr and ("cannot find" in build.stderr or "unsupported" in build.stderr):
            pytest.skip("clang has no libFuzzer runtime")
        pytest.fail("fuzz harness does not build:\n" + build.stderr[-3000:])
    seconds = int(os.environ.get("ECOMLM_FUZZ_SECONDS", "30"))
    # the ASan-instrumented harness sits near 3 GB of RSS from its first input
    # (shadow memory and quarantine over the built-in vocabularies), above
    # libFuzzer's 2 GB default; 6 GB still catches a runaway allocation
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    run = subprocess.run([exe, f"-max_total_time={seconds}", "-max_len=2048", "-timeout=10", "-rss_limit_mb=6144",
                          f"-artifact_prefix={tmp_path}/", str(corpus),
                          os.path.join(ROOT, "fuzz", "seeds")],
                         capture_output=True, text=True, timeout=seconds + 120)
    tail = run.stderr[-4000:]
    assert run.returncode == 0, "the fuzzer found a crash:\n" + tail
    assert "Done" in tail
