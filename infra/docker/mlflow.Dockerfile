# The MLflow tracking server image (infra/k8s/mlflow.yaml): PostgreSQL driver for the backend
# store, boto3 for the S3 artifact proxy.
#
#   docker build -f infra/docker/mlflow.Dockerfile -t ghcr.io/fcn-pipeline/mlflow:3.17.2 infra/docker
FROM python:3.11-slim
RUN pip install --no-cache-dir "mlflow==3.17.2" "psycopg2-binary>=2.9" "boto3>=1.34"
USER 1000
ENTRYPOINT ["mlflow"]
