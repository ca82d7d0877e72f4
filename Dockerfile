# kubernetes-ec2-autoscaler. Three stages:
#   docker build -t IMAGE .                       the image to run: the runtime lock and the package only
#   docker build --target test -t IMAGE-test .    a checkout with every requirement; runs the test suite
# `docker run IMAGE --cluster-name ... --regions ...` runs the kubernetes-ec2-autoscaler command.
# The base image by digest (the multi-platform index of python:3.11-slim), so two builds of one
# commit start from the same bytes and a re-pushed tag changes nothing until it is bumped here. To
# bump (monthly, and for a CVE in the base): `docker buildx imagetools inspect python:3.11-slim`
# (or `crane digest python:3.11-slim`) prints the index digest; put it after the @, build, and run
# the test target.
ARG PYTHON_IMAGE=python:3.11-slim@sha256:9c900dea9e8fb7e16277c179b555cc72d29a352dbc33cff48ad5a0412fd5bfc7

# ------------------------------------------------------------------------------------------- build
# The package as a wheel; the build tools stay in this stage.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY requirements/ requirements/
COPY autoscaler/ autoscaler/
RUN pip wheel --no-deps --wheel-dir /wheels .

# -------------------------------------------------------------------------------------------- test
# Everything a checkout has, so the suite runs as in CI (kubectl is not here; its tests skip).
FROM ${PYTHON_IMAGE} AS test
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTEST_ADDOPTS="-p no:cacheprovider"
WORKDIR /src
COPY requirements.txt ./
COPY requirements/ requirements/
RUN pip install -r requirements.txt
COPY pyproject.toml README.md main.py Dockerfile .dockerignore autoscaler-dep.yaml autoscaler-secret.yaml iam-policy.json ./
COPY autoscaler/ autoscaler/
COPY deploy/ deploy/
COPY charts/ charts/
COPY tools/ tools/
COPY test/ test/
COPY docs/ docs/
ENTRYPOINT ["python", "-m", "pytest"]
CMD ["test/", "-q"]

# ----------------------------------------------------------------------------------------- runtime
# The last stage, so the default target: the locked runtime set (hashes checked) and the package.
FROM ${PYTHON_IMAGE} AS runtime
ARG VERSION=1.0.0
LABEL org.opencontainers.image.title="kubernetes-ec2-autoscaler" \
      org.opencontainers.image.description="Scales EC2 Auto Scaling Groups to the pending pods of a Kubernetes cluster" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.source="https://github.com/openai/kubernetes-ec2-autoscaler" \
      org.opencontainers.image.licenses="MIT"

# No .pyc files at run time (the root filesystem is read-only in the Deployment), logs straight
# to the pod's log, and pip neither caches nor phones home during the build.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# Dependencies in their own layer, rebuilt only when the lock changes; every file checked against
# its hash, so two builds of one commit install the same bytes.
COPY requirements/runtime.lock /tmp/runtime.lock
RUN pip install --require-hashes --no-deps -r /tmp/runtime.lock && rm /tmp/runtime.lock

# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
RUN groupadd --system --gid 10001 autoscaler \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin autoscaler

# The package (owned by root: the autoscaler cannot rewrite its own code), without its
# dependencies: they are the locked set above. Then the installers go: nothing at run time needs
# pip, setuptools or wheel, and without them a compromised process cannot install anything.
COPY --from=build /wheels/ /tmp/wheels/
RUN pip install --no-deps /tmp/wheels/*.whl && rm -r /tmp/wheels \
    && python -m pip uninstall --yes pip setuptools wheel \
    && python -c 'import importlib.util as u; assert not any(map(u.find_spec, ("pip", "setuptools", "wheel")))'

USER 10001:10001
ENTRYPOINT ["kubernetes-ec2-autoscaler"]
CMD ["--help"]
