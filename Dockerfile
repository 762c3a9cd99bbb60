# The pipeline image: the official Airflow 3.3 image for Python 3.11 plus this project (provider, DAGs, API,
# emulator). One image serves every Airflow component, the results API and, for local use, the APS emulator.
ARG AIRFLOW_IMAGE=apache/airflow:3.3.2-python3.11
FROM ${AIRFLOW_IMAGE}

ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    AIRFLOW__CORE__LOAD_EXAMPLES=False \
    AIRFLOW__CORE__DAGS_FOLDER=/opt/aps-pipeline/dags \
    AIRFLOW__CORE__PLUGINS_FOLDER=/opt/aps-pipeline/plugins

# Dependencies first so code edits do not invalidate this layer. Airflow itself is pinned to the image's version
# in requirements.txt, so pip keeps the image's Airflow.
COPY --chown=airflow:0 requirements.txt /opt/aps-pipeline/requirements.txt
RUN pip install --no-cache-dir -r /opt/aps-pipeline/requirements.txt

COPY --chown=airflow:0 pyproject.toml README.md /opt/aps-pipeline/
COPY --chown=airflow:0 include /opt/aps-pipeline/include
COPY --chown=airflow:0 plugins /opt/aps-pipeline/plugins
COPY --chown=airflow:0 dags /opt/aps-pipeline/dags
RUN pip install --no-cache-dir --no-deps /opt/aps-pipeline

WORKDIR /opt/aps-pipeline
