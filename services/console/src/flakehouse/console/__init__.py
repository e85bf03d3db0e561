"""The console: the web query builder and the JSON API (DESIGN.md §11)."""
