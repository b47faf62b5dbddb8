"""The run machinery: a validated config (:mod:`~dynafolio.experiments.config`), its plan
(prepared prices, strategies built and checked: :mod:`~dynafolio.experiments.plan`), the task
graph built from the plan (:mod:`~dynafolio.experiments.tasks`), the runner that executes it
and assembles each result (:mod:`~dynafolio.experiments.runner`), and the run directory
(:mod:`~dynafolio.experiments.artifacts`). The named experiments (S1 … S4, the controls)
are studies built on it: :mod:`dynafolio.studies`."""
