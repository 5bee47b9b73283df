"""pytest plugin (entry point ``pytest11``): fixtures that start simulated devices on free ports."""
