//! Nucleon: `GET /countries/{code}` reads one row through `nucleon-db` and answers JSON.
//! The database comes from `--url` (PostgreSQL: a pool per worker; SQLite: one per
//! process), `--pool` connections per worker.

use db_bench::{Args, BY_CODE, Country, SCHEMA};
use nucleon::db::Db;
use nucleon::{App, Dep, HttpError, Json, Path, Sql, get};

const COUNTRY: Sql = Sql::named("countries.by_code", BY_CODE);

async fn country(Dep(db): Dep<Db>, Path(code): Path<String>) -> Result<Json<Country>, HttpError> {
    Ok(Json(db.query(COUNTRY).bind(code).unique().await?))
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let config = format!(
        "[default.db]\nurl = \"{}\"\npool_size = {}\n\n[default.http]\naccess_log = false\n",
        args.url,
        args.pool as usize * args.workers
    );
    let app = App::new("db-bench")
        .default_config(config.leak())
        .without_dns()
        .database()
        .schema(SCHEMA)
        .route("/countries/{code}", get(country));
    nucleon::run_from(app, ["db-nucleon", "--port", &args.port.to_string(), "-j", &args.workers.to_string()])
        .map_or_else(|e| { eprintln!("{e}"); std::process::ExitCode::FAILURE }, |()| std::process::ExitCode::SUCCESS)
}
