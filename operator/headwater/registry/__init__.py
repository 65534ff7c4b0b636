"""The OCI distribution client (references, auth, manifests, rate budget) and cosign's
signature formats (cosign.py).

It knows nothing of Kubernetes: an import-linter contract forbids kopf and
lightkube here, so it stays testable against a bare registry process. The
client arrives with the ImageStream imports issue.
"""
