//! actix-web wiring
