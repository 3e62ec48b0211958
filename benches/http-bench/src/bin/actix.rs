//! actix-web 4 as its documentation sets it up: `HttpServer` with `-j` workers.
//! Keep-alive raised from its 5 s default so the idle-connection test can hold
//! connections (the other servers keep idle connections at least 10 s).

use std::time::Duration;

use actix_web::{App, HttpResponse, HttpServer, web};
use http_bench::{Args, HELLO, Hello};

async fn hello() -> web::Json<Hello> {
    web::Json(HELLO)
}

async fn country(code: web::Path<String>) -> HttpResponse {
    match http_bench::country(&code) {
        Some(c) => HttpResponse::Ok().json(c),
        None => HttpResponse::NotFound().finish(),
    }
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    actix_web::rt::System::new().block_on(async move {
        HttpServer::new(|| {
            App::new()
                .route("/json", web::get().to(hello))
                .route("/countries/{code}/", web::get().to(country))
        })
        .workers(args.workers)
        .keep_alive(Duration::from_secs(60))
        .backlog(4096)
        .bind(args.addr())?
        .run()
        .await
    })
}
