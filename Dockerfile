# kubernetes-ec2-autoscaler: `docker run IMAGE --cluster-name ... --regions ...` runs main.py;
# `docker run --entrypoint python IMAGE -m pytest test/ -q` runs the test suite in the image.
FROM python:3.11-slim

# No .pyc files at run time (the root filesystem is read-only in the Deployment), logs straight
# to the pod's log, and pip neither caches nor phones home during the build.
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTEST_ADDOPTS="-p no:cacheprovider"

WORKDIR /app

# Dependencies in their own layer: it is rebuilt only when requirements.txt changes, not on
# every source edit. The test tools are in requirements.txt too, so the image can run the tests.
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt

# A fixed numeric UID, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
# The source stays owned by root: the autoscaler cannot rewrite its own code.
RUN groupadd --system --gid 10001 autoscaler \
    && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin autoscaler

COPY main.py ./
COPY autoscaler/ autoscaler/
# The tests check the deployment files against the code, so those files travel with the tests.
COPY test/ test/
COPY Dockerfile .dockerignore autoscaler-dep.yaml autoscaler-secret.yaml iam-policy.json ./

USER 10001:10001

ENTRYPOINT ["python", "main.py"]
CMD ["--help"]
