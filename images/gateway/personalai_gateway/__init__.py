"""personalai gateway: the brief's app API for every person in the watched namespaces."""
