"""Link fact-checking: safe fetching of user-supplied URLs (more to come: extraction, the detector)."""
