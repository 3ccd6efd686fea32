"""Training and evaluation with torch (imported only by the train and evaluate commands)."""
