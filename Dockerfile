# Image for trackier-offer-sync: the official Airflow image plus exactly requirements.txt, with every
# transitive dependency pinned by requirements.lock.
#
#   docker compose build            (docker-compose.yaml builds it as ${AIRFLOW_IMAGE_NAME})
#   docker build -t trackier-offer-sync-airflow:3.3.2 .
#
# The Airflow version in the FROM line must equal the apache-airflow pin in requirements.txt;
# tests/deployment/test_deployment.py fails when they drift apart. For a byte-identical base, replace the tag
# with its digest (apache/airflow:3.3.2-python3.11@sha256:...) once you have pulled it.
FROM apache/airflow:3.3.2-python3.11

# The official image installs Python packages as its `airflow` user (into that user's ~/.local).
USER airflow

COPY --chown=airflow:root requirements.txt requirements.lock /opt/airflow/

# The official "extend the image" recipe: name "apache-airflow==${AIRFLOW_VERSION}" (the image's own
# version) next to the requirements, so pip can never up- or downgrade Airflow while it resolves them.
# requirements.lock is a constraints file (-c): it pins every package requirements.txt pulls in,
# transitive ones included, to the versions the test suite ran with (how it is made and why it is not
# Airflow's constraints file: scripts/lock_requirements.py), so two builds a month apart install the
# same packages. No _PIP_ADDITIONAL_REQUIREMENTS anywhere: the dependencies are installed once, here.
RUN pip install --no-cache-dir "apache-airflow==${AIRFLOW_VERSION}" -r /opt/airflow/requirements.txt \
    -c /opt/airflow/requirements.lock

# The code also goes into the image, so that the same image runs where there are no bind mounts
# (Celery workers on other machines, KubernetesExecutor pods). docker-compose.yaml bind-mounts the
# working tree over these folders, so local edits take effect without a rebuild.
COPY --chown=airflow:root include/ /opt/airflow/include/
COPY --chown=airflow:root dags/ /opt/airflow/dags/
COPY --chown=airflow:root plugins/ /opt/airflow/plugins/

# `from include.offer_sync import ...` needs the folder that holds include/ on the import path.
ENV PYTHONPATH=/opt/airflow

# Fail the build, not the first task, when a dependency is missing or the package does not import.
# (FAB provides the auth manager that docker-compose.yaml configures; the official image ships it.)
RUN python -c "import airflow.providers.fab, airflow.providers.celery, airflow.providers.http, airflow.providers.postgres, include.offer_sync"
