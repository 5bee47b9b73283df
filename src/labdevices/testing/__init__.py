"""A pytest plugin with fixtures that start simulated devices for users' own CI."""
