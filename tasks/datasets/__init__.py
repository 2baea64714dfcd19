"""One module per dataset; each registers a function ``(root, config) -> SourceLibrary``."""
