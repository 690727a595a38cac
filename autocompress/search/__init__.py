"""The search: Optuna controllers, the trial objective, study storage, Pareto fronts, export."""
