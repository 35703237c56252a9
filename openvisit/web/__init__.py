"""Web plumbing shared by every domain package: dependencies, errors, templates."""
