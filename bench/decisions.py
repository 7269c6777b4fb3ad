"""How often the gate's rules decide right and wrong at 30..3,000 evaluation rows (docs/DECISIONS.md).

    python -m bench.decisions                   # the tables of docs/DECISIONS.md, in markdown
    python -m bench.decisions --threshold 0.9 --minimum 0.85 --champion-accuracy 0.85 --correlations 0.3,0.6

Every rate is computed exactly, from the binomial (one model against the threshold) or the multinomial
(two models on the same rows) distribution of the counts the rules read, with the rules of
pipeline/gate/ themselves (``judge``, ``champion_holds``, ``tango_score``). A seeded simulation of
the paired draws (numpy's default generator, ``--seed``) re-derives the champion tables as a check on the
exact sums. Writes bench/results/decisions.json. Takes a few seconds.
"""
from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import binom, norm

from bench.common import write_result
from pipeline.gate.comparison import champion_holds
from pipeline.gate.decision import ChampionPolicy, GatePolicy
from pipeline.gate.rules import judge
from pipeline.gate.statistics import rows_needed, tango_score, wilson_interval
from pipeline.outcomes import Verdict

SIZES = (30, 100, 300, 1_000, 3_000)
STEP = 0.02  # a model this far below/above the threshold
CHAMPION_STEP = 0.03  # a challenger this far below/above the champion
TAIL = 1e-15  # multinomial mass left out of the exact sums, per side


# --------------------------------------------------------------------------- one model against the threshold
def promoting_counts(n: int, policy: GatePolicy, threshold: float, minimum: float) -> int:
    """The fewest correct rows out of n with which ``judge`` deploys (n + 1: never).

    The verdict is monotone in the number of correct rows (the value and both interval ends rise with
    it), so bisection finds the boundary with ~12 calls of the gate's own rule; both sides of the
    boundary are re-checked.
    """
    def deploys(k: int) -> bool:
        interval = wilson_interval(k, n) if policy is GatePolicy.CONFIDENT else None
        return judge("accuracy", k / n, threshold, minimum, policy=policy, interval=interval).decision is Verdict.DEPLOY

    if not deploys(n):
        return n + 1
    low, high = -1, n  # deploys(high) is true; deploys(low) is false (k = -1 stands for "never")
    while high - low > 1:
        middle = (low + high) // 2
        if deploys(middle):
            high = middle
        else:
            low = middle
    assert deploys(high) and (high == 0 or not deploys(high - 1))
    return high


def gate_table(threshold: float, minimum: float) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    truths = (round(threshold - STEP, 10), threshold, round(threshold + STEP, 10))
    table = []
    for policy in (GatePolicy.POINT, GatePolicy.CONFIDENT):
        for n in SIZES:
            k = promoting_counts(n, policy, threshold, minimum)
            rates = [float(binom.sf(k - 1, n, truth)) for truth in truths]
            table.append({"policy": str(policy), "rows": n, "correct_rows_to_deploy": k,
                          **{f"promotes_at_{truth:g}": rate for truth, rate in zip(truths, rates)}})
    at_threshold = [row[f"promotes_at_{threshold:g}"] for row in table if row["policy"] == "confident"]
    target = {"confident promotes a model at the threshold <= 5% for every n": max(at_threshold) <= 0.05,
              "worst": max(at_threshold)}
    return table, target


def rows_needed_table(threshold: float) -> list[dict[str, Any]]:
    observed = [a for a in (threshold + 0.005, threshold + 0.01, threshold + 0.02, threshold + 0.03,
                            threshold + 0.04, 1.0) if a <= 1.0]
    return [{"observed_accuracy": round(a, 10), "rows_needed": rows_needed(a, threshold)} for a in observed]


# --------------------------------------------------------------------------- a challenger against the champion
def joint_cells(candidate: float, champion: float, correlation: float) -> tuple[float, float, float, float]:
    """P(both right), P(only the candidate), P(only the champion), P(neither) for per-row correctness
    with the given accuracies and correlation (the phi coefficient of the two right/wrong indicators)."""
    both = candidate * champion + correlation * math.sqrt(candidate * (1 - candidate) * champion * (1 - champion))
    cells = (both, candidate - both, champion - both, 1 - candidate - champion + both)
    if min(cells) < -1e-12:
        raise SystemExit(f"correlation {correlation} is impossible for accuracies {candidate} and {champion}: "
                         f"pick a smaller one")
    return tuple(max(cell, 0.0) for cell in cells)  # type: ignore[return-value]


Rule = Callable[[np.ndarray, np.ndarray, int], np.ndarray]  # (candidate_only, champion_only, n) -> replaces


def exact_rate(rule: Rule, n: int, cells: tuple[float, float, float, float]) -> float:
    """P(rule replaces the champion), summed over the discordant counts: m = b + c ~ Binomial(n, p10 + p01),
    b | m ~ Binomial(m, p10 / (p10 + p01)). Every rule here reads only b, c and n."""
    _, p10, p01, _ = cells
    discordant = p10 + p01
    if discordant == 0:
        return float(rule(np.array([0]), np.array([0]), n)[0])
    m = np.arange(int(binom.ppf(TAIL, n, discordant)), int(binom.isf(TAIL, n, discordant)) + 1)
    b = np.arange(0, int(m[-1]) + 1)
    mm, bb = np.meshgrid(m, b, indexing="ij")
    valid = bb <= mm
    weight = binom.pmf(mm, n, discordant) * binom.pmf(bb, mm, p10 / discordant) * valid
    replaces = rule(np.where(valid, bb, 0), np.where(valid, mm - bb, 0), n)
    return float((weight * replaces).sum())


def simulated_rate(rule: Rule, n: int, cells: tuple[float, float, float, float], draws: int,
                   rng: np.random.Generator) -> float:
    counts = rng.multinomial(n, cells, size=draws)
    return float(rule(counts[:, 1], counts[:, 2], n).mean())


def policy_rule(policy: ChampionPolicy, margin: float, alpha: float) -> Rule:
    return lambda b, c, n: ~champion_holds(b, c, n, policy=policy, margin=margin, alpha=alpha)


def non_inferiority_rule(margin: float, confidence: float = 0.95) -> Rule:
    """Proposed: replace only when the lower end of the paired difference's interval is above -margin,
    i.e. Tango's one-sided score test rejects "the candidate is worse by the margin or more"."""
    z = float(norm.ppf(0.5 + confidence / 2))
    return lambda b, c, n: tango_score(b, c, n, -margin) > z


def champion_tables(champion: float, correlations: Sequence[float], margin: float, alpha: float, draws: int,
                    seed: int) -> dict[str, Any]:
    truths = (-CHAMPION_STEP, 0.0, CHAMPION_STEP)
    rules = {"not_worse": policy_rule(ChampionPolicy.NOT_WORSE, margin, alpha),
             "better": policy_rule(ChampionPolicy.BETTER, margin, alpha)}
    rng = np.random.default_rng(seed)
    table, worst_gap = [], 0.0
    for correlation in correlations:
        for name, rule in rules.items():
            for n in SIZES:
                row: dict[str, Any] = {"correlation": correlation, "policy": name, "rows": n}
                for truth in truths:
                    cells = joint_cells(round(champion + truth, 10), champion, correlation)
                    exact = exact_rate(rule, n, cells)
                    simulated = simulated_rate(rule, n, cells, draws, rng)
                    standard_error = math.sqrt(max(exact * (1 - exact), 1e-12) / draws)
                    worst_gap = max(worst_gap, abs(exact - simulated) / standard_error)
                    row[f"replaces_at_{truth:+g}"] = exact
                    row[f"simulated_at_{truth:+g}"] = simulated
                table.append(row)
    at_1000 = [row["replaces_at_-0.03"] for row in table if row["policy"] == "not_worse" and row["rows"] == 1_000]
    margins = []
    for correlation in correlations:
        for candidate_margin in (0.0, 0.005, 0.01, 0.02):
            rule = policy_rule(ChampionPolicy.NOT_WORSE, candidate_margin, alpha)
            margins.append({"correlation": correlation, "margin": candidate_margin, **{
                f"replaces_at_{truth:+g}_n{n}": exact_rate(rule, n, joint_cells(round(champion + truth, 10), champion,
                                                                               correlation))
                for n in (100, 1_000) for truth in truths}})
    proposal = []
    for correlation in correlations:
        for n in SIZES:
            rule = non_inferiority_rule(CHAMPION_STEP)
            proposal.append({"correlation": correlation, "rows": n, **{
                f"replaces_at_{truth:+g}": exact_rate(rule, n, joint_cells(round(champion + truth, 10), champion,
                                                                         correlation))
                for truth in truths}})
    return {"table": table, "margins": margins, "proposal": proposal,
            "simulation_worst_gap_in_standard_errors": worst_gap,
            "target": {"not_worse lets a 3-points-worse challenger through <= 5% at n = 1,000": max(at_1000) <= 0.05,
                       "worst": max(at_1000)}}


# --------------------------------------------------------------------------- markdown
def percent(rate: float) -> str:
    """Rates as a reader compares them: 1 decimal, more only for small ones; 0 and 100% only when exact."""
    if rate <= 0.0 or rate >= 1.0:
        return "0" if rate <= 0.0 else "100%"
    if rate > 0.999:
        return ">99.9%"
    if rate >= 0.01:
        return f"{rate:.1%}"
    return f"{rate:.2%}" if rate >= 1e-4 else "<0.01%"


def markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    rule = "|" + "|".join("---:" if i else "---" for i in range(len(headers))) + "|"
    lines = ["| " + " | ".join(headers) + " |", rule]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _deploys_from(correct: int, rows: int) -> str:
    return "never" if correct > rows else f"{correct:,} right"


def report(args: argparse.Namespace, gates: list[dict[str, Any]], gate_target: dict[str, Any],
           needed: list[dict[str, Any]], champions: dict[str, Any]) -> str:
    t, step = args.threshold, STEP
    truths = (round(t - step, 10), t, round(t + step, 10))
    out = [f"### Gate policies: P(promote) by true accuracy (threshold {t:.0%}, minimum {args.minimum:.0%}; "
           "exact binomial)",
           "", markdown(["policy", "rows", "deploys from", *[f"true {x:.0%}" for x in truths]], [
               [row["policy"], f"{row['rows']:,}", _deploys_from(row["correct_rows_to_deploy"], row["rows"]),
                *[percent(row[f"promotes_at_{x:g}"]) for x in truths]] for row in gates]),
           "", f"Target: `confident` promotes a model at the threshold <= 5% for every n: "
               f"**{'met' if gate_target[next(iter(gate_target))] else 'NOT met'}** "
               f"(worst {percent(gate_target['worst'])}).", "",
           f"### Rows needed (threshold {t:.0%})", "",
           markdown(["observed accuracy", "rows needed"], [[f"{row['observed_accuracy']:.1%}",
                                                          f"{row['rows_needed']:,}" if row["rows_needed"] else "-"]
                                                         for row in needed])]
    c = args.champion_accuracy
    labels = [f"{c - CHAMPION_STEP:.0%} (3 worse)", f"{c:.0%} (equal)", f"{c + CHAMPION_STEP:.0%} (3 better)"]
    keys = [f"{x:+g}" for x in (-CHAMPION_STEP, 0.0, CHAMPION_STEP)]
    for correlation in args.correlations:
        rows = [row for row in champions["table"] if row["correlation"] == correlation]
        out += ["", f"### Champion at {c:.0%}: P(challenger replaces it), correlation {correlation:g} "
                    f"(margin {args.margin:g}, alpha {args.alpha:g}; exact, simulation in brackets)", "",
                markdown(["policy", "rows", *[f"challenger {label}" for label in labels]], [
                    [row["policy"], f"{row['rows']:,}",
                     *[f"{percent(row['replaces_at_' + k])} ({percent(row['simulated_at_' + k])})" for k in keys]]
                    for row in rows])]
    target = champions["target"]
    out += ["", f"Target: `not_worse` lets a 3-points-worse challenger through <= 5% at n = 1,000: "
                f"**{'met' if target[next(iter(target))] else 'NOT met'}** (worst {percent(target['worst'])}). "
                f"Simulation vs exact: worst gap {champions['simulation_worst_gap_in_standard_errors']:.1f} "
                f"standard errors ({args.draws:,} draws per cell, seed {args.seed}).", "",
            "### What the margin of `not_worse` trades (exact)", "",
            markdown(["correlation", "margin (points)", "rows", "3-worse replaces", "equal blocked",
                      "3-better blocked"], [
                [f"{row['correlation']:g}", f"{row['margin'] * 100:g}", f"{n:,}",
                 percent(row[f"replaces_at_{keys[0]}_n{n}"]), percent(1 - row[f"replaces_at_{keys[1]}_n{n}"]),
                 percent(1 - row[f"replaces_at_{keys[2]}_n{n}"])]
                for row in champions["margins"] for n in (100, 1_000)]),
            "", "### Proposed: non-inferiority test (replace only when the paired interval's lower end is above "
                "-3 points; exact)", "",
            markdown(["correlation", "rows", *[f"challenger {label}" for label in labels]], [
                [f"{row['correlation']:g}", f"{row['rows']:,}", *[percent(row["replaces_at_" + k]) for k in keys]]
                for row in champions["proposal"]])]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threshold", type=float, default=0.95, help="accuracy_threshold (default 0.95)")
    parser.add_argument("--minimum", type=float, default=0.90, help="minimum_accuracy (default 0.90)")
    parser.add_argument("--champion-accuracy", type=float, default=0.90, help="true accuracy of the champion")
    parser.add_argument("--correlations", type=lambda s: [float(x) for x in s.split(",")], default=[0.5, 0.8],
                        help="correlation of the two models' right/wrong on a row (default 0.5,0.8)")
    parser.add_argument("--margin", type=float, default=0.0, help="champion_margin (default 0)")
    parser.add_argument("--alpha", type=float, default=0.05, help="champion_alpha (default 0.05)")
    parser.add_argument("--draws", type=int, default=20_000, help="simulated paired draws per cell (default 20,000)")
    parser.add_argument("--seed", type=int, default=20260101, help="seed of the simulation check (default 20260101)")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    gates, gate_target = gate_table(args.threshold, args.minimum)
    needed = rows_needed_table(args.threshold)
    champions = champion_tables(args.champion_accuracy, args.correlations, args.margin, args.alpha, args.draws,
                                args.seed)
    text = report(args, gates, gate_target, needed, champions)
    seconds = time.perf_counter() - began
    print(text)
    print(f"\n({seconds:.1f} s)")
    result = {"settings": vars(args), "gate": gates, "gate_target": gate_target, "rows_needed": needed,
              "champion": champions, "seconds": seconds}
    write_result("decisions", result)
    return result


if __name__ == "__main__":
    main()
