"""The token-reduction core: interfaces, token operations, the predictor and its selection rule,
threshold calibration, the distillation objective and the MAC counter. Imports nothing else of the package."""
