"""The comparison's Markdown: the report's sections, and tables through the one formatter."""

from __future__ import annotations

from report.comparison.synthetic import PLAN, run_data

from polylora.report.comparison import render
from polylora.report.comparison.compute import compare_groups
from polylora.report.comparison.model import RunData


def test_report_has_every_section_and_the_small_sample_note() -> None:
    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    text = render.report(res)
    for heading in ("## Analysis plan", "## Primary endpoint", "## Non-inferiority",
                    "## Secondary endpoints", "## Sensitivity analyses",
                    "## Evaluated checkpoints"):
        assert heading in text
    assert "too few seeds for an informative interval" in text


def test_tables_escape_pipes_and_keep_their_column_count() -> None:
    runs = [RunData(f"{g}-{s}", g, {"rouge_l": 0.1 * s + (0.2 if g != "a|b" else 0.0)},
                    seed=str(s)) for g in ("a|b", "c") for s in (1, 2, 3)]
    res = compare_groups(runs, "a|b", ["rouge_l"])
    for table in (render.summary_markdown(res), render.runs_markdown(res),
                  render.checkpoints_markdown(res), render.effects_markdown(res, ["secondary"])):
        rows = [line for line in table.splitlines() if line.startswith("|")]
        assert rows[1].startswith("|---|"), table
        widths = {line.replace("\\|", "").count("|") for line in rows}
        assert len(widths) == 1, table
    assert "| a\\|b | `a|b-1` |" not in render.runs_markdown(res)
    assert "| a\\|b | `a\\|b-1` |" in render.runs_markdown(res)


def test_cost_section_totals_each_group_and_compares_with_the_baseline() -> None:
    runs = [RunData(f"{g}-{s}", g, {"rouge_l": 0.1 * s + (0.2 if g == "poly" else 0.0)},
                    seed=str(s), cost_usd=cost)
            for g, cost in (("baseline", 0.10), ("poly", 0.25)) for s in range(3)]
    runs.append(RunData("poly-old", "poly", {"rouge_l": 0.4}, seed="9"))  # logged no cost
    res = compare_groups(runs, "baseline", ["rouge_l"])
    text = render.report(res)
    assert "## Cost" in text
    section = render.cost_markdown(res).splitlines()
    assert section[2] == "| baseline | 3 | $0.3000 | $0.1000 | 1.00× |"
    assert section[3] == "| poly | 3 | $0.7500 | $0.2500 | 2.50× |"
    assert section[5].startswith("All groups: $1.0500")


def test_primary_row_shows_the_seed_level_t_beside_the_crossed_interval() -> None:
    from polylora.render.markdown import signed

    res = compare_groups(run_data(), "baseline", ["rouge_l", "self_bleu", "pass@10"], plan=PLAN)
    primary = next(e for e in res.effects if e.role == "primary")
    t = primary.seed_test
    assert t is not None and primary.method.startswith("crossed")
    section = render.report(res).split("## Primary endpoint\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("|")]
    assert "seed-level t over seed means [95% CI]" in rows[0]
    cells = [c.strip() for c in rows[2].strip("|").split("|")]
    assert cells[2] == f"{signed(primary.delta)} [{signed(primary.low)}, {signed(primary.high)}]"
    assert cells[3] == f"{signed(t.delta)} [{signed(t.low)}, {signed(t.high)}] (n = {len(t.seeds)})"
    # the other tables keep their columns
    assert "seed-level" not in render.effects_markdown(res, ["secondary"])
