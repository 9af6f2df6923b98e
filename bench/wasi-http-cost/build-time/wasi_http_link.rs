//! Build-time experiment only (bench/wasi-http-cost/build-time.sh): links
//! `wasmtime-wasi` and `wasmtime-wasi-http` into the host as serving
//! `wasi:http/outgoing-handler` would.

use wasmtime::component::{Linker, ResourceTable};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

pub struct WasiHttpState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
}

impl WasiView for WasiHttpState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for WasiHttpState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: Default::default(),
        }
    }
}

pub fn link(engine: &wasmtime::Engine) -> wasmtime::Result<Linker<WasiHttpState>> {
    let mut linker = Linker::new(engine);
    // What `wasi:http` needs (io, clocks, random, stdio), not the whole of WASI.
    wasmtime_wasi::p2::add_to_linker_proxy_interfaces_async(&mut linker)?;
    wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
    Ok(linker)
}

pub fn state() -> WasiHttpState {
    WasiHttpState {
        wasi: WasiCtx::builder().build(),
        http: WasiHttpCtx::new(),
        table: ResourceTable::new(),
    }
}
