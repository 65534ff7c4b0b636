# The Headwater operator image.
#
#   buildah bud --isolation chroot --storage-driver vfs \
#     --build-arg BASE_IMAGE=<a Python 3.11+ image> -t headwater-operator .
#
# BASE_IMAGE needs python3 with the venv module; only PyPI is reached, for
# the project's dependencies. Behind a TLS-intercepting proxy, hand pip the CA
# bundle as a build secret (kept out of every layer):
#
#   --secret id=pip-ca,src=/etc/ssl/certs/ca-certificates.crt
ARG BASE_IMAGE=python:3.11-slim

FROM ${BASE_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python3 -m venv /opt/headwater
# Dependencies first, from pyproject.toml alone, so code edits reuse this layer.
WORKDIR /src
COPY pyproject.toml README.md ./
RUN --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && mkdir -p operator/headwater \
 && touch operator/headwater/__init__.py \
 && /opt/headwater/bin/pip install . \
 && /opt/headwater/bin/pip uninstall --yes headwater \
 && rm -rf build operator   # the stub must not shadow the real code in setuptools' build/
COPY operator/ operator/
# A regular (non-editable) install: the final stage has no /src.
RUN --mount=type=secret,id=pip-ca \
    if [ -f /run/secrets/pip-ca ]; then export PIP_CERT=/run/secrets/pip-ca; fi \
 && /opt/headwater/bin/pip install --no-deps . \
 && /opt/headwater/bin/python -m compileall -q /opt/headwater/lib \
 && /opt/headwater/bin/headwater --version

FROM ${BASE_IMAGE}
COPY --from=builder /opt/headwater /opt/headwater
ENV PATH=/opt/headwater/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
# 65532 is the conventional "nonroot" uid; the Deployment enforces it too.
USER 65532:65532
WORKDIR /tmp
EXPOSE 8080 8081
ENTRYPOINT ["headwater"]
CMD ["operator", "run", "--all-namespaces"]
