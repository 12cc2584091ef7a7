use crate::map_error_code;

use std::io;
use zstd_safe;

/// Allows to compress independently multiple chunks of data.
///
/// Each job will be processed entirely in-memory without streaming, so this
/// is most fitting for many small jobs. To compress larger volume that don't
/// easily fit in memory, a streaming compression may be more appropriate.
///
/// It is more efficient than a streaming compressor for 2 reasons:
/// * It re-uses the zstd context between jobs to avoid re-allocations
/// * It avoids copying data from a `Read` into a temporary buffer before compression.
///
/// crmdq's patch (see `PATCH.md`): a compressor that only has a level (`new`,
/// `with_dictionary` with an empty dictionary, `Default`) creates no context of its
/// own; each job borrows its thread's context, set to the compressor's level. A
/// dictionary, a parameter, a pledged size or `context_mut` gives it its own context,
/// as before. The bytes written are the same either way.
#[derive(Default)]
pub struct Compressor<'a> {
    /// Its own context, once it needs one; until then its thread's.
    context: Option<zstd_safe::CCtx<'a>>,
    /// The level asked for, if any (`None`: zstd's default).
    level: Option<i32>,
}

thread_local! {
    /// The context that compressors without one of their own borrow for a job.
    static SHARED: std::cell::RefCell<Option<zstd_safe::CCtx<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Runs `job` on a context holding only `level`: the thread's, or (when it is busy or
/// the thread is ending) a fresh one.
fn with_shared(
    level: Option<i32>,
    job: impl FnOnce(&mut zstd_safe::CCtx<'static>) -> zstd_safe::SafeResult,
) -> io::Result<usize> {
    let run = |ctx: &mut zstd_safe::CCtx<'static>| {
        ctx.set_parameter(zstd_safe::CParameter::CompressionLevel(
            level.unwrap_or(0),
        ))
        .map_err(map_error_code)?;
        let result = job(ctx);
        if result.is_err() {
            // As `compress_to_buffer` does: abandon a failed frame.
            let _ = ctx.reset(zstd_safe::ResetDirective::SessionOnly);
        }
        result.map_err(map_error_code)
    };
    let mut job = Some(run);
    let shared = SHARED.try_with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        let ctx = slot.get_or_insert_with(zstd_safe::CCtx::create);
        Some((job.take()?)(ctx))
    });
    match shared {
        Ok(Some(result)) => result,
        _ => (job.take().expect("the job ran, or is still here"))(
            &mut zstd_safe::CCtx::create(),
        ),
    }
}

impl Compressor<'static> {
    /// Creates a new zstd compressor
    pub fn new(level: i32) -> io::Result<Self> {
        Self::with_dictionary(level, &[])
    }

    /// Creates a new zstd compressor, using the given dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_dictionary(level: i32, dictionary: &[u8]) -> io::Result<Self> {
        let mut compressor = Self::default();

        compressor.set_dictionary(level, dictionary)?;

        Ok(compressor)
    }
}

impl<'a> Compressor<'a> {
    /// Creates a new compressor using an existing `EncoderDictionary`.
    ///
    /// The compression level will be the one specified when creating the dictionary.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn with_prepared_dictionary<'b>(
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<Self>
    where
        'b: 'a,
    {
        let mut compressor = Self::default();

        compressor.set_prepared_dictionary(dictionary)?;

        Ok(compressor)
    }

    /// Changes the compression level used by this compressor.
    ///
    /// *This will clear any dictionary previously registered.*
    ///
    /// If you want to keep the existing dictionary, you will need to pass it again to
    /// `Self::set_dictionary` instead of using this method.
    pub fn set_compression_level(&mut self, level: i32) -> io::Result<()> {
        self.set_dictionary(level, &[])
    }

    /// Changes the dictionary and compression level used by this compressor.
    ///
    /// Will affect future compression jobs.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_dictionary(
        &mut self,
        level: i32,
        dictionary: &[u8],
    ) -> io::Result<()> {
        if self.context.is_none() && dictionary.is_empty() {
            self.level = Some(level);
            return Ok(());
        }
        let context = self.own();
        context
            .set_parameter(zstd_safe::CParameter::CompressionLevel(level))
            .map_err(map_error_code)?;

        context
            .load_dictionary(dictionary)
            .map_err(map_error_code)?;

        self.level = Some(level);
        Ok(())
    }

    /// Its own context: created (holding the level asked for) on first need.
    fn own(&mut self) -> &mut zstd_safe::CCtx<'a> {
        let level = self.level;
        self.context.get_or_insert_with(|| {
            let mut context = zstd_safe::CCtx::create();
            if let Some(level) = level {
                // As before: a level accepted once is accepted again.
                let _ = context.set_parameter(
                    zstd_safe::CParameter::CompressionLevel(level),
                );
            }
            context
        })
    }

    /// Changes the dictionary used by this compressor.
    ///
    /// The compression level used when preparing the dictionary will be used.
    ///
    /// Note that using a dictionary means that decompression will need to use
    /// the same dictionary.
    pub fn set_prepared_dictionary<'b>(
        &mut self,
        dictionary: &'a crate::dict::EncoderDictionary<'b>,
    ) -> io::Result<()>
    where
        'b: 'a,
    {
        self.own()
            .ref_cdict(dictionary.as_cdict())
            .map_err(map_error_code)?;

        Ok(())
    }

    /// Compress a single block of data to the given destination buffer.
    ///
    /// Returns the number of bytes written, or an error if something happened
    /// (for instance if the destination buffer was too small). A failed job
    /// is abandoned, and the compressor can be set up again for the next one.
    /// With worker threads (see `multithread`), abandoning a job waits for
    /// them to be done with it.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    pub fn compress_to_buffer<C: zstd_safe::WriteBuf + ?Sized>(
        &mut self,
        source: &[u8],
        destination: &mut C,
    ) -> io::Result<usize> {
        let Some(context) = self.context.as_mut() else {
            return with_shared(self.level, |ctx| ctx.compress2(destination, source));
        };
        let result = context.compress2(destination, source);
        if result.is_err() {
            // `compress2` leaves a failed frame open, and zstd refuses most
            // setters mid-frame. Abandon it, so the compressor can be set up
            // for the next job. Resetting only the session cannot fail (it
            // waits for the worker threads, if any).
            let _ = context.reset(zstd_safe::ResetDirective::SessionOnly);
        }
        result.map_err(map_error_code)
    }

    /// Compresses a block of data and returns the compressed result.
    ///
    /// A level of `0` uses zstd's default (currently `3`).
    pub fn compress(&mut self, data: &[u8]) -> io::Result<Vec<u8>> {
        // We allocate a big buffer, slightly larger than the input data.
        let buffer_len = zstd_safe::compress_bound(data.len());
        let mut buffer = Vec::with_capacity(buffer_len);

        self.compress_to_buffer(data, &mut buffer)?;

        // Should we shrink the vec? Meh, let the user do it if he wants.
        Ok(buffer)
    }

    /// Gives mutable access to the internal context.
    pub fn context_mut(&mut self) -> &mut zstd_safe::CCtx<'a> {
        self.own()
    }

    /// Sets a compression parameter for this compressor.
    pub fn set_parameter(
        &mut self,
        parameter: zstd_safe::CParameter,
    ) -> io::Result<()> {
        self.own()
            .set_parameter(parameter)
            .map_err(map_error_code)?;
        Ok(())
    }

    /// Sets the expected size of the input.
    ///
    /// This affects the compression effectiveness.
    ///
    /// It is an error to give an incorrect size (an error will be returned when closing the
    /// stream if the size does not match what was pledged).
    ///
    /// Giving a `None` size means the size is unknown (this is the default).
    pub fn set_pledged_src_size(
        &mut self,
        size: Option<u64>,
    ) -> io::Result<()> {
        self.own()
            .set_pledged_src_size(size)
            .map_err(map_error_code)?;
        Ok(())
    }

    crate::encoder_parameters!();
}

fn _assert_traits() {
    fn _assert_send<T: Send>(_: T) {}

    _assert_send(Compressor::new(0));
}
