"""Which pretraining runs the across-model test trains: six recipes of the quick preset's shape that span
the recipe search's range of held-out [MASK] accuracy, three seeds each, and three more seeds of `quick`
so that the spread from the seed alone is measured at one recipe (docs/ACROSS_MODELS_PLAN.md).

Each run is a candidate of the recipe search (recipe_search/recipes.py: overrides of `quick_plateau`) trained
for STEPS steps with milestones at MILESTONES, in its own folder, resumable. `shard(k, n)` splits the
runs for n processes, seed by seed, so that every recipe has a first seed early.
"""

from __future__ import annotations

from dataclasses import dataclass

from bertstudy.recipe_search.recipes import DEFAULT_CANDIDATES, Candidate

STEPS = 1000  # the quick preset's length: every model is compared at the same step
MILESTONES = "300,500,700,1000"  # with step 0, which every milestone list has
PROBE_STEPS = (500, 1000)  # every run is probed here ...
ALL_PROBE_STEPS = (0, 300, 500, 700, 1000)  # ... and the quick seeds at every milestone
SEEDS = (1, 2, 3)
EXTRA_QUICK_SEEDS = (4, 5, 6)
# recipe name -> the search candidate it is (held-out [MASK] accuracy at 1,200 steps in the search, seed 42)
RECIPES = {
    "baseline": "baseline",  # 5.5%: the copy plateau
    "all-no-mask-25": "all-no-mask-25",  # 10.4%
    "unigram+constant+nsp-0": "unigram+constant+nsp-0",  # 12.0%
    "all-no-lr-4e-3": "all-no-lr-4e-3",  # 16.0%
    "quick-no-constant": "quick-no-constant",  # 17.1%
    "quick": "all-no-pre-ln",  # 24.6%: the quick preset's recipe
}
QUICK = "quick"


@dataclass(frozen=True)
class PlannedRun:
    recipe: str
    seed: int
    candidate: Candidate  # its overrides include the milestones

    @property
    def probe_steps(self) -> tuple[int, ...]:
        return ALL_PROBE_STEPS if self.recipe == QUICK else PROBE_STEPS


def candidates() -> dict[str, Candidate]:
    """The six recipes as search candidates named after the recipe, with the milestones added."""
    search = {item["name"]: item for item in DEFAULT_CANDIDATES}
    return {recipe: Candidate(recipe, {**search[name]["overrides"], "milestones": MILESTONES})
            for recipe, name in RECIPES.items()}


def planned_runs() -> list[PlannedRun]:
    """Seed 1 of every recipe, then seed 2, seed 3, then quick's extra seeds."""
    found = candidates()
    runs = [PlannedRun(recipe, seed, found[recipe]) for seed in SEEDS for recipe in RECIPES]
    return runs + [PlannedRun(QUICK, seed, found[QUICK]) for seed in EXTRA_QUICK_SEEDS]


def shard(runs: list[PlannedRun], index: int, count: int) -> list[PlannedRun]:
    """The runs of shard `index` (1-based) of `count`: every count-th run."""
    if not 1 <= index <= count:
        raise ValueError(f"shard {index} of {count}")
    return runs[index - 1::count]
