"""profilestore: a self-hosted visitor profile store that speaks Adobe Target\x27s Profile APIs."""
