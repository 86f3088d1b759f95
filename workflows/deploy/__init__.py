"""Deploy: run a recipe, push its result to a phone, and profile it against the recipe's starting model."""
