"""The sandbox's views: machine endpoints (``api``) and the pages a person clicks."""
