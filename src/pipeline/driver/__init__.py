"""The pipeline driver: the DAG from config, executed step by step."""
