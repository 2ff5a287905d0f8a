"""The readable text report of an `analysis.analyze` result (what analyze_100k.py prints).

Every figure comes from the result dict; nothing is computed here but formatting. Figures that
assume independent points say so, and the dependence-aware figures stand beside them.
"""

from __future__ import annotations

from bertstudy.analysis.phases import MAX_BREAKS, final_flat_text
from bertstudy.analysis.shortcut_level import shortcut_lines
from bertstudy.analysis.study import FAR_BEYOND_FACTOR

R_RANGE_CAVEAT = "r depends on the step range and the logging density, not only on learning"


def _fmt(value, spec: str = ".4f", none: str = "n/a") -> str:
    return none if value is None else format(value, spec)


def _fmt_ci(ci, spec: str = ".4f") -> str:
    if ci[0] is None and ci[1] is None:
        return "n/a"
    return f"[{_fmt(ci[0], spec, '-inf')}, {_fmt(ci[1], spec, 'inf')}]"


def _curve_points_note(result: dict) -> str:
    """Say up front when the curves use fewer points than the correlation (e.g. step 0 left out)."""
    cp = result["curve_points"]
    if not cp["excluded_steps"]:
        return ""
    left_out = ", ".join(f"{s:,}" for s in cp["excluded_steps"])
    return f" (curves: {cp['n']}, step {left_out} left out)"


def _target_text(e: dict) -> str:
    """One curve's steps-to-target in words; a step beyond 100x the run gets no number and no
    interval (a curve extrapolated that far says nothing about the step, only that it is far)."""
    status = e["status"]
    if status in ("not_fitted", "fit_failed"):
        return f"{'not fitted' if status == 'not_fitted' else 'fit failed'}: {e.get('message', '')}".rstrip(": ")
    if status == "not_reached":
        return "never: the fitted curve levels off below the target"
    if status == "beyond_100x_run":
        return f"beyond {FAR_BEYOND_FACTOR}x the run"
    where = "within the run" if status == "within_run" else "extrapolated"
    return (f"{e['step']:>14,.0f}  {where:<15} 95% CI {_fmt_ci(e['ci'], ',.0f')} "
            "(circular block bootstrap, if this family is right)")


def _stats_line(label: str, s: dict) -> str:
    return (f"  {label}  mean {s['mean']:.4f}  max {s['max']:.4f}  min {s['min']:.4f}  std {s['std']:.4f}  "
            f"final-window mean {s['final_window_mean']:.4f}")


def _summary_lines(result: dict) -> list[str]:
    """The analysed metric first; training MLM accuracy (the original's mlm_stats) only as a labelled
    extra when another metric was analysed."""
    metric = result["metric"]["name"]
    lines = [_stats_line(f"{metric} (analysed)", result["metric_stats"])]
    if metric != "mlm_acc":
        lines.append(_stats_line("extra, not analysed: training MLM accuracy (mlm_acc)", result["mlm_stats"]))
    loss, nsp = result["loss_stats"], result["nsp_stats"]
    if loss:
        lines.append(f"  training loss {loss['initial']:.4f} -> {loss['final']:.4f}  (decrease {loss['decrease']:.4f}, "
                     f"{_fmt(loss['decrease_percent'], '.1f')}%)")
    if nsp:
        lines.append(f"  training NSP accuracy  mean {nsp['mean']:.4f}; {nsp['verdict']}")
    return lines


def format_report(result: dict) -> str:
    """A readable multi-line report of an `analyze` result."""
    a, metric = result["association"], result["metric"]["name"]
    pearson = a["pearson"]
    lines = [f"Analysis of {result['source']['path']} ({result['source']['format']} format)",
             f"metric: {metric} - {result['metric']['description']}"
             + (f"\n  ({result['metric']['why']})" if result["metric"].get("why") else ""),
             f"points: {result['data_points']}{_curve_points_note(result)}, last step: {result['total_steps']:,}", "",
             "Association with training step (plain intervals and p-values assume independent points)",
             f"  Pearson r   {_fmt(pearson['r'])}  95% CI (Fisher z, assumes independent points) "
             f"{_fmt_ci(pearson['ci'])}  p={_fmt(pearson['p_value'], '.2g')} (assumes independent points)",
             f"  R^2         {_fmt(result['r_squared'])}",
             f"  Spearman    {_fmt(a['spearman']['rho'])}   Kendall tau {_fmt(a['kendall']['tau'])}",
             f"  slope       {_fmt(a['slope_per_10k']['estimate'])} per 10K steps, "
             f"95% CI (OLS t, assumes independent points) {_fmt_ci(a['slope_per_10k']['ci'])}"]
    lines += _dependence_lines(result)
    boot = result["bootstrap"]
    if boot.get("resamples"):
        ba = boot["association"]
        lines += [f"  circular block bootstrap ({boot['resamples']} resamples, block {boot['block_length']} from the "
                  f"line's residuals): r {_fmt_ci(ba['pearson_r_ci'])}, slope/10K {_fmt_ci(ba['slope_per_10k_ci'])}"]
    else:
        lines += [f"  bootstrap: {boot.get('message', 'not run')}"]
    lines += _r_range_lines(result)
    lines += ["", "Learning curves (best family by AIC, the best_curve key, marked *; the chosen curve is below)"]
    if result["curve_points"]["excluded_steps"]:
        lines.append(f"  fitted on {result['curve_points']['n']} of the {result['data_points']} points; left out "
                     f"step(s) {result['curve_points']['excluded_steps']}: {result['curve_points']['why']}")
    forecast = result["forecast"]["curves"]
    for name, c in result["curves"].items():
        mark = "*" if name == result["best_curve"] else " "
        if not c["ok"]:
            lines.append(f" {mark}{name:<17} not fitted: {c['message']}")
            continue
        params = ", ".join(f"{k}={_fmt(v, '.4g')}" for k, v in c["params"].items())
        f = forecast[name]
        lines.append(f" {mark}{name:<17} {c['formula']:<16} R^2={_fmt(c['r_squared'])} AIC={_fmt(c['aic'], '.1f')} "
                     f"dAIC={_fmt(c['delta_aic'], '.1f')}  {params}")
        lines.append(f"  {'':<17} forecast (fit on first {result['forecast']['train_fraction']:.0%}): "
                     f"MAE={_fmt(f['mae'])} RMSE={_fmt(f['rmse'])}"
                     + (f"  lag-1 autocorr of residuals {_fmt(boot['residual_lag1_autocorrelation'].get(name), '.2f')}"
                        if boot.get("resamples") else ""))
        if c["note"]:
            lines.append(f"  {'':<17} note: {c['note']}")
    if result["forecast"].get("best_by_mae"):
        lines.append(f"  best forecaster of the held-out part (one split): "
                     f"{_read_as(result, result['forecast']['best_by_mae'])}")
    lines += _ranking_lines(result) + _rolling_lines(result) + _phase_lines(result)
    if result.get("shortcut"):
        lines += ["", "Shortcut (predicted from the training characters and the 80/10/10 recipe, no context)"]
        lines += shortcut_lines(result["shortcut"])
    for row in result["targets"]:
        lines += ["", f"Steps to reach {metric} = {row['target']} (first reached by its moving average: "
                  f"{'not yet' if row['observed_step'] is None else format(row['observed_step'], ',')})"]
        lines += [f"  {name:<17} {_target_text(e)}" for name, e in row["curves"].items()]
        lines.append(f"  {_spread_text(row.get('spread'))}")
    lines += ["", "Summaries"] + _summary_lines(result)
    comparison = result.get("comparison")
    if comparison:
        lines += ["", f"Comparison ({comparison['metric']}, baseline {comparison['baseline']})"]
        for label, s in comparison["runs"].items():
            lines.append(f"  {label:<8} r={_fmt(s['pearson_r'])} mean={_fmt(s['mean'])} max={_fmt(s['max'])} "
                         f"final-window={_fmt(s['final_window_mean'])} steps={s['total_steps']:,} ({s['path']})")
        for label, d in comparison["differences"].items():
            lines.append(f"  {label}: r {_fmt(d.get('pearson_r'), '+.4f')} "
                         f"({_fmt(d.get('pearson_r_percent'), '+.1f')}%), mean {_fmt(d.get('mean'), '+.4f')}, "
                         f"final-window {_fmt(d.get('final_window_mean'), '+.4f')}")
        lines.append(f"  {R_RANGE_CAVEAT}: runs of different lengths or logging densities differ in r even when "
                     "they learn alike")
    if "goal_achieved" in result:
        lines += ["", f"goal r >= {result['goal']['require_r']}: "
                  f"{'MET' if result['goal_achieved'] else 'NOT MET'} (r={_fmt(result['pearson_correlation'])}; "
                  f"{R_RANGE_CAVEAT}, see above)"]
    return "\n".join(lines)


def _dependence_lines(result: dict) -> list[str]:
    dep = result.get("association_dependence")
    if not dep or dep.get("effective_n") is None:
        return []
    nw = dep["slope_per_10k_newey_west"]
    lines = [f"  effective n {dep['effective_n']:.0f} of {result['data_points']} (lag-1 autocorrelation of the line's "
             f"residuals {_fmt(dep['residual_lag1'], '.2f')}); Fisher interval at the effective n "
             f"{_fmt_ci(dep['pearson_ci_fisher_effective_n'])}"]
    if nw.get("se_hac") is not None:
        lines.append(f"  slope, Newey-West (lag {nw['lag']}, allows autocorrelation): 95% CI {_fmt_ci(nw['ci_hac'])}, "
                     f"standard error {_fmt(nw['se_ratio'], '.1f')}x the plain one")
    return lines


def _r_range_lines(result: dict) -> list[str]:
    ranges = result.get("r_by_step_range")
    if not ranges:
        return []
    parts = [f"first {key.split('_')[1].replace('pct', '%')} (to step {v['last_step']:,.0f}) {_fmt(v['r'], '.3f')}"
             for key, v in ranges.items() if key.startswith("first_")]
    if "log_spaced" in ranges:
        parts.append(f"log-spaced subsample of {ranges['log_spaced']['n']} points {_fmt(ranges['log_spaced']['r'], '.3f')}")
    return [f"  {R_RANGE_CAVEAT}: r over the",
            "  " + "; ".join(parts)]


def _ranking_lines(result: dict) -> list[str]:
    ranking = result.get("curve_ranking")
    if not ranking or not ranking.get("order"):
        return []
    lines = [f"  AIC ranking, gaps scaled by effective n / n = {ranking['scale']:.2f} (under {4:g} = a tie): "
             f"{ranking['verdict']}"]
    for row in ranking["order"][1:]:
        tie = "tie" if row["name"] in ranking["tied_with_leader"] else "behind"
        lines.append(f"    {row['name']:<17} dAIC {row['delta_aic']:.1f}, effective {row['delta_aic_effective']:.1f}: "
                     f"{tie}; residual lag-1 {_fmt(row['residual_lag1'], '.2f')}")
    lines += [f"    note: {name}: {note}" for name, note in ranking.get("notes", {}).items()]
    return lines


def _read_as(result: dict, name: str | None) -> str:
    """A power law on its exponent bound is named as what it is: log-linear."""
    notes = (result.get("curve_ranking") or {}).get("notes", {})
    if name == "power_saturating" and "power_saturating" in notes:
        return "power_saturating at its exponent bound, i.e. log-linear"
    return str(name)


def _rolling_lines(result: dict) -> list[str]:
    rolling = result.get("forecast_rolling")
    if not rolling or not rolling.get("origins"):
        return []
    splits = ", ".join(f"{o['split_step']:,.0f}" for o in rolling["origins"])
    maes = [f"{name} {_fmt(v)} (wins {rolling['wins'].get(name, 0)})" for name, v in rolling["mean_mae"].items()]
    phase = rolling.get("phases") or {}
    if phase.get("mean_mae") is not None:
        maes.append(f"phase model {_fmt(phase['mean_mae'])}")
    lines = [f"  rolling-origin forecast (refitted on the points before each of {len(rolling['origins'])} origins: "
             f"steps {splits}), mean MAE: " + ", ".join(maes),
             f"  best forecaster over the origins: {_read_as(result, rolling.get('best_by_mean_mae'))}"]
    if phase.get("origins"):
        lines.append(f"  phase model (0-{MAX_BREAKS} breaks by AIC on the points before each origin, last segment extrapolated), "
                     "MAE per origin: " + ", ".join(_fmt(o["mae"]) for o in phase["origins"]))
    return lines


def _phase_lines(result: dict) -> list[str]:
    phase, choice = result.get("phases"), result.get("model_choice")
    if not phase:
        return []
    kept = phase.get("selected_breaks")
    lines = ["", f"Phases ({phase['model']}, fitted with 0 to {len(phase.get('fits', {})) - 1} breaks; kept: "
                 f"{'none' if kept is None else kept}, each extra break must gain more than {phase['aic_tie']:g} AIC)"]
    plateau = phase.get("plateau")
    if plateau:
        boot = plateau.get("bootstrap") or {}
        how = (f"95% CI from {boot['resamples']} circular block resamples of the kept fit's residuals, "
               f"block {boot['block']}" if boot.get("resamples") else "no bootstrap (--bootstrap 0): no intervals")
        lines += [f"  plateau from step {plateau['start_step']:,.0f} {_fmt_ci(plateau['start_step_ci'], ',.0f')} "
                  f"to step {plateau['end_step']:,.0f} {_fmt_ci(plateau['end_step_ci'], ',.0f')}, "
                  f"level {plateau['level']:.4f} {_fmt_ci(plateau['level_ci'])}",
                  f"  ({how}); slopes per ln(step): rise {plateau['rise_slopes_per_ln_step'][0]:.4f}, "
                  f"plateau {plateau['slope_per_ln_step']:.4f}, second rise {plateau['rise_slopes_per_ln_step'][1]:.4f}"]
    else:
        lines.append(f"  no plateau: {phase['verdict'].removeprefix('no plateau: ')}")
    if final_flat_text(phase):
        lines.append(f"  {final_flat_text(phase)}")
    for k, fit in phase.get("fits", {}).items():
        if fit:
            breaks = ", ".join(f"{b:,.0f}" for b in fit["breaks"])
            where = f"{k} break(s) at step {breaks}" if breaks else "no break (log-linear)"
            slopes = ", ".join(f"{s:.4f}" for s in fit["slopes_per_ln_step"])
            lines.append(f"    {where}: slopes per ln(step) {slopes}; AIC {fit['aic']:.1f}")
    if choice:
        tied = (result.get("curve_ranking") or {}).get("tied_with_leader") or []
        ties = f" (tied by AIC with {', '.join(tied)})" if tied and choice["chosen"] != "phases" else ""
        lines.append(f"  chosen curve: {choice['chosen']}{ties}; {choice['verdict']}")
    return lines


def _spread_text(spread: dict | None) -> str:
    """Steps-to-target across families: the curve family, not the bootstrap, is the first uncertainty."""
    if not spread:
        return ""
    if spread["min_step"] is None:
        text = "no family reaches it within 100x the run"
    elif spread["min_step"] == spread["max_step"]:
        text = f"only {spread['families_reaching'][0]} reaches it within 100x the run: {spread['min_step']:,.0f}"
    else:
        text = (f"spread across the families that reach it ({', '.join(spread['families_reaching'])}): "
                f"{spread['min_step']:,.0f} - {spread['max_step']:,.0f}")
    far = spread.get("beyond_100x_run") or []
    return "across families: " + text + (f"; beyond {FAR_BEYOND_FACTOR}x the run: {', '.join(far)}" if far else "")
