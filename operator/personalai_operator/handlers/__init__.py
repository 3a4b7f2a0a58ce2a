"""kopf handlers, one module per kind; importing this package registers them all.

Handlers are thin: parse the object into models, build children with manifests.py, create them
through kube.py, and write the status that run_status.py / personalai_status.py derive.
Serving (Deployment, Service, model slots) gets its own module here.
"""

from personalai_operator.handlers import personalai, serving, startup, training_run  # noqa: F401  (registration)
