"""aptrt's implementation. Everything public is re-exported from :mod:`aptrt`."""
