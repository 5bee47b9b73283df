"""Sans-IO protocol cores: fed bytes, they return events; they never await."""
