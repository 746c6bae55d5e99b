"""The card from a built wheel: the template ships inside the package, so a pip-installed dalr_hf trains a run whose
card is the same as the one a source checkout writes (the full DALR card, never the fallback)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = "dalr_hf/publish/templates/dalr_model_card.md"
# lines that measure the run itself (wall-clock durations) and so differ between any two runs
_TIMING = re.compile(r"^- (Training|Evaluation|Total): .*$", re.MULTILINE)


def _recipe(tmp_path: Path, student: str, teacher: str, output_dir: Path) -> Path:
    data = REPO_ROOT / "data"
    corpus = tmp_path / "wiki1m_slice.txt"
    if not corpus.exists():
        lines = (data / "demo" / "wiki1m_slice.txt").read_text(encoding="utf-8").splitlines()
        corpus.write_text("\n".join(lines[:16]) + "\n", encoding="utf-8")
        captions = (data / "demo" / "flickr30k_captions_slice.txt").read_text(encoding="utf-8").splitlines()
        (tmp_path / "flickr30k_captions.txt").write_text("\n".join(captions[:8]) + "\n", encoding="utf-8")
        sts = tmp_path / "downstream" / "STS" / "STSBenchmark"
        sts.mkdir(parents=True)
        dev = (data / "senteval" / "downstream" / "STS" / "STSBenchmark" / "sts-dev.csv").read_text(encoding="utf-8")
        (sts / "sts-dev.csv").write_text("\n".join(dev.splitlines()[:30]) + "\n", encoding="utf-8")
    config = {
        "student_model": student,
        "card_base_model": "my-org/tiny-bert",
        "teachers": [teacher],
        "teacher_weights": [1.0],
        "text_corpus": str(corpus),
        "stand_in_captions": str(tmp_path / "flickr30k_captions.txt"),
        "stand_in_dim": 32,
        "eval_data_dir": str(tmp_path / "downstream"),
        "sts_test": False,  # the STS test sets are not in this tiny data folder
        "output_dir": str(output_dir),
        "per_device_train_batch_size": 4,
        "max_steps": 2,
        "eval_steps": 2,
        "save_total_limit": 1,
        "logging_steps": 1,
        "report_to": "none",
        "seed": 7,
    }
    path = tmp_path / f"{output_dir.name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _train(python: str, recipe: Path, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    code = (
        "import sys, dalr_hf; print('DALR_HF_AT', dalr_hf.__file__); from dalr_hf.cli import main; main(sys.argv[1:])"
    )
    return subprocess.run(
        [python, "-c", code, "train", "--config", str(recipe)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.mark.slow
def test_wheel_install_writes_the_same_card_as_the_source_checkout(tmp_path, tiny_bert_dir, tiny_teacher_dir):
    # 1. the wheel, built offline with the project's own build backend
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(wheels), "."],
        cwd=REPO_ROOT,
        check=True,
        capture_output=True,
        timeout=600,
    )
    (wheel,) = wheels.glob("dalr_hf-*.whl")
    assert TEMPLATE in zipfile.ZipFile(wheel).namelist()

    # 2. a fresh virtual environment: the dependencies come from this one (a .pth line), dalr_hf only from the wheel
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = str(venv / "bin" / "python")
    site = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8")
    # --target installs into the fresh environment's site-packages whatever the dependencies' folder holds
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", site, str(wheel)],
        check=True,
        capture_output=True,
        timeout=600,
    )

    # 3. the same tiny run, once from the source checkout and once from the wheel, outside the repository
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1", OMP_NUM_THREADS="1")
    work = tmp_path / "work"
    work.mkdir()
    cards = {}
    for name, interpreter, extra in (
        ("source", sys.executable, {"PYTHONPATH": str(REPO_ROOT)}),
        ("wheel", python, {}),
    ):
        output_dir = tmp_path / "runs" / "out"  # the same path for both runs, one after the other
        recipe = _recipe(tmp_path, tiny_bert_dir, tiny_teacher_dir, output_dir)
        if output_dir.exists():
            os.rename(output_dir, tmp_path / "runs" / "out-source")
        run = _train(interpreter, recipe, work, {**env, **extra})
        assert run.returncode == 0, run.stderr[-3000:]
        location = re.search(r"DALR_HF_AT (\S+)", run.stdout).group(1)
        if name == "wheel":
            assert location.startswith(site), location  # the installed package, not the checkout
        else:
            assert location.startswith(str(REPO_ROOT)), location
        cards[name] = (output_dir / "README.md").read_text(encoding="utf-8")

    # the full DALR card (not the fallback), with the stand-in warning and tag, in both
    for card in cards.values():
        assert "<!-- generated by dalr_hf.publish" in card and "could not be generated" not in card
        assert "STAND-IN, not features of images" in card and "- stand-in-image-features" in card
        assert "base_model: my-org/tiny-bert" in card and "- nlphuji/flickr30k" in card
    assert _TIMING.sub("-", cards["wheel"]) == _TIMING.sub("-", cards["source"])
