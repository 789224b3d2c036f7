"""docker-compose.yaml, Dockerfile, .env.example and .dockerignore, without Docker."""
