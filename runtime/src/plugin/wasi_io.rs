//! WASI streams and polling without Tokio. wasmtime-wasi's synchronous bindings run every
//! blocking stream operation through `block_on` on the ambient Tokio runtime, which panics on a
//! runtime worker, where the pipeline calls plugins. The streams a plugin can reach here are
//! its closed stdin and discarded stdout/stderr, whose operations complete at once, so a local
//! executor serves them on any thread. Adapted from wasmtime-wasi 48.0.8 `src/p2/host/io.rs` and
//! `src/p2/poll.rs` (Apache-2.0 WITH LLVM-exception), with `in_tokio` replaced by
//! `futures::executor::block_on`.

use futures::executor::block_on;
use wasmtime::component::{HasData, Resource, ResourceTable};
use wasmtime_wasi::p2::bindings::io::poll as async_poll;
use wasmtime_wasi::p2::bindings::io::streams::{
    Host as AsyncHost, HostInputStream as AsyncHostInputStream,
    HostOutputStream as AsyncHostOutputStream,
};
use wasmtime_wasi::p2::bindings::sync::io::poll::{self, Pollable};
use wasmtime_wasi::p2::bindings::sync::io::streams::{self, InputStream, OutputStream};
use wasmtime_wasi::p2::{StreamError, StreamResult};

/// The resource table, seen through Tokio-free stream and poll implementations.
pub struct Io<'a>(pub &'a mut ResourceTable);

/// Links [`Io`] as the data of `wasi:io/streams` and `wasi:io/poll`.
pub struct TokioFreeIo;

impl HasData for TokioFreeIo {
    type Data<'a> = Io<'a>;
}

impl poll::Host for Io<'_> {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        block_on(async { async_poll::Host::poll(self.0, pollables).await })
    }
}

impl poll::HostPollable for Io<'_> {
    fn ready(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<bool> {
        block_on(async { async_poll::HostPollable::ready(self.0, pollable).await })
    }

    fn block(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        block_on(async { async_poll::HostPollable::block(self.0, pollable).await })
    }

    fn drop(&mut self, pollable: Resource<Pollable>) -> wasmtime::Result<()> {
        async_poll::HostPollable::drop(self.0, pollable)
    }
}

impl streams::Host for Io<'_> {
    fn convert_stream_error(&mut self, err: StreamError) -> wasmtime::Result<streams::StreamError> {
        Ok(AsyncHost::convert_stream_error(self.0, err)?.into())
    }
}

impl streams::HostOutputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<OutputStream>) -> wasmtime::Result<()> {
        block_on(async { AsyncHostOutputStream::drop(self.0, stream).await })
    }

    fn check_write(&mut self, stream: Resource<OutputStream>) -> StreamResult<u64> {
        AsyncHostOutputStream::check_write(self.0, stream)
    }

    fn write(&mut self, stream: Resource<OutputStream>, bytes: Vec<u8>) -> StreamResult<()> {
        AsyncHostOutputStream::write(self.0, stream, bytes)
    }

    fn blocking_write_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        bytes: Vec<u8>,
    ) -> StreamResult<()> {
        block_on(async {
            AsyncHostOutputStream::blocking_write_and_flush(self.0, stream, bytes).await
        })
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        stream: Resource<OutputStream>,
        len: u64,
    ) -> StreamResult<()> {
        block_on(async {
            AsyncHostOutputStream::blocking_write_zeroes_and_flush(self.0, stream, len).await
        })
    }

    fn subscribe(
        &mut self,
        stream: Resource<OutputStream>,
    ) -> wasmtime::Result<Resource<Pollable>> {
        AsyncHostOutputStream::subscribe(self.0, stream)
    }

    fn write_zeroes(&mut self, stream: Resource<OutputStream>, len: u64) -> StreamResult<()> {
        AsyncHostOutputStream::write_zeroes(self.0, stream, len)
    }

    fn flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        AsyncHostOutputStream::flush(self.0, Resource::new_borrow(stream.rep()))
    }

    fn blocking_flush(&mut self, stream: Resource<OutputStream>) -> StreamResult<()> {
        block_on(async {
            AsyncHostOutputStream::blocking_flush(self.0, Resource::new_borrow(stream.rep())).await
        })
    }

    fn splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        AsyncHostOutputStream::splice(self.0, dst, src, len)
    }

    fn blocking_splice(
        &mut self,
        dst: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> StreamResult<u64> {
        block_on(async { AsyncHostOutputStream::blocking_splice(self.0, dst, src, len).await })
    }
}

impl streams::HostInputStream for Io<'_> {
    fn drop(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<()> {
        block_on(async { AsyncHostInputStream::drop(self.0, stream).await })
    }

    fn read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        AsyncHostInputStream::read(self.0, stream, len)
    }

    fn blocking_read(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<Vec<u8>> {
        block_on(async { AsyncHostInputStream::blocking_read(self.0, stream, len).await })
    }

    fn skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        AsyncHostInputStream::skip(self.0, stream, len)
    }

    fn blocking_skip(&mut self, stream: Resource<InputStream>, len: u64) -> StreamResult<u64> {
        block_on(async { AsyncHostInputStream::blocking_skip(self.0, stream, len).await })
    }

    fn subscribe(&mut self, stream: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        AsyncHostInputStream::subscribe(self.0, stream)
    }
}
