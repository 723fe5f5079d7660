"""The development stack: a real Airflow started on loopback for `dodas demo`, the CLI and the end-to-end tests."""
