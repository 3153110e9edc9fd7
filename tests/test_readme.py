"""The README's plain-loop snippet runs as written (given the names it leaves to the reader)."""

import re
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_snippet_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    snippet = next(b for b in blocks if "lstsd.LSTSD(" in b)
    model = torch.nn.Linear(8, 100)
    namespace = {
        "my_dataset": TensorDataset(torch.randn(300, 8), torch.randint(0, 100, (300,))),
        "model": model,
        "opt": torch.optim.SGD(model.parameters(), lr=0.1),
        "epochs": 7,   # > E = 6: the second mini-generation runs, with both distillation terms
    }
    exec(compile(snippet, str(README), "exec"), namespace)
    method = namespace["method"]
    assert method.next_epoch == 7
    parts = method.loss_components()
    assert parts["long"] > 0 and parts["short"] > 0


def test_the_readme_results_are_those_of_docs_results():
    """Every 'mean ± std' the README quotes is in docs/results.md, where its command is."""
    results = (README.parent / "docs" / "results.md").read_text()
    quoted = re.findall(r"\d+\.\d\d ± \d+\.\d\d", README.read_text())
    assert len(quoted) >= 6
    assert [q for q in quoted if q not in results] == []


def test_the_study_steps_the_docs_name_are_steps_of_the_script():
    """docs/results.md names each run by its step of studies/when_lstsd_helps.sh: every step it names
    exists (and the script says which it has), and the script parses."""
    import subprocess

    script = README.parent / "studies" / "when_lstsd_helps.sh"
    subprocess.run(["bash", "-n", str(script)], check=True)
    text = script.read_text()
    steps = set(re.search(r'^STEPS="([^"]+)"', text, flags=re.M).group(1).split())
    steps |= set(re.search(r'^GPU_STEPS="([^"]+)"', text, flags=re.M).group(1).split())
    handled = set(re.findall(r"^    ([a-z0-9-]+)\)", text, flags=re.M))
    assert steps == handled, "every step in STEPS or GPU_STEPS has a case, and every case is in one of them"
    results = (README.parent / "docs" / "results.md").read_text()
    named = set(re.findall(r"when_lstsd_helps\.sh ([a-z0-9-]+)", results))
    for first_cell in re.findall(r"^\| (`[^|]*) \|", results, flags=re.M):   # the table of steps not run yet
        named |= set(re.findall(r"`([a-z0-9-]+)`", first_cell))
    assert len(named) >= 5 and named <= steps, sorted(named - steps)


def test_the_all_methods_step_runs_every_method():
    """The study's all-methods step lists its methods by hand (vanilla first, LSTSD last): a method
    added to the registry must be added there too."""
    from lstsd.methods import available_methods

    script = (README.parent / "studies" / "when_lstsd_helps.sh").read_text()
    listed = re.search(r'^ALL_METHODS="([^"]+)"', script, flags=re.M).group(1).replace("\\\n", "").split(",")
    assert sorted(listed) == sorted(available_methods()) and len(listed) == len(set(listed))
    assert listed[0] == "vanilla" and listed[-1] == "lstsd"


def test_the_table1_step_runs_table1s_methods():
    """The GPU step's methods are Table 1's rows (paper, Experiments), each a registered method."""
    from lstsd.methods import available_methods

    script = (README.parent / "studies" / "when_lstsd_helps.sh").read_text()
    listed = re.search(r'^TABLE1_METHODS="([^"]+)"', script, flags=re.M).group(1).split(",")
    assert listed == ["vanilla", "mean_teacher", "snapshot_ensembles", "temporal_ensembling",
                      "snapshot_distillation", "lstsd"]
    assert set(listed) <= set(available_methods())
