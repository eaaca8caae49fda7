#!/usr/bin/env bash
# Run once by the postgres image on an empty data directory (/docker-entrypoint-initdb.d/).
# One database per service, each owned by its own login role with its own password (read from the mounted
# secret $RS_SECRETS_DIR/<service>_db_password), and nobody else may connect to it: a service's credentials
# open its own database only. The password is read by psql itself (never on a command line, never logged).
set -euo pipefail

secrets_dir="${RS_SECRETS_DIR:-/run/secrets}"
for service in ${RS_DATABASES:-authz depot connections}; do
  if [[ ! "${service}" =~ ^[a-z]+$ ]]; then
    echo "init-databases: bad service name '${service}'" >&2
    exit 1
  fi
  role="rs_${service}"
  password_file="${secrets_dir}/${service}_db_password"
  if [[ ! -s "${password_file}" ]]; then
    echo "init-databases: ${password_file} is missing or empty" >&2
    exit 1
  fi
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname postgres <<SQL
\\set role '${role}'
\\set password \`tr -d '\\r\\n' < '${password_file}'\`
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', :'role', :'password') \\gexec
\\unset password
SELECT format('CREATE DATABASE %I OWNER %I', :'role', :'role') \\gexec
SELECT format('REVOKE ALL ON DATABASE %I FROM PUBLIC', :'role') \\gexec
SELECT format('GRANT CONNECT, TEMPORARY ON DATABASE %I TO %I', :'role', :'role') \\gexec
SQL
  psql -v ON_ERROR_STOP=1 --no-psqlrc --username "${POSTGRES_USER:-postgres}" --dbname "${role}" <<SQL
\\set role '${role}'
REVOKE ALL ON SCHEMA public FROM PUBLIC;
SELECT format('ALTER SCHEMA public OWNER TO %I', :'role') \\gexec
SQL
  echo "init-databases: database ${role}, owned by role ${role} (only it may connect)"
done
