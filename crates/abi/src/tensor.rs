//! Tensor views: the C form ([`TensorView`], [`TensorViewMut`]) and the safe borrowed form
//! ([`TensorRef`], [`TensorMut`]) that plugin and host code use.
//!
//! Views are dense and row-major. Converting a C view into a safe one checks the dtype, null
//! pointers, alignment and that the element count does not overflow; the caller's promise is
//! only that the pointers are valid for that many elements.

use std::ffi::c_void;
use std::fmt;

use crate::PluginError;

/// Element type codes, numbered as ONNX's `TensorProto.DataType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum Dtype {
    /// 32-bit float.
    F32 = 1,
    /// 32-bit signed integer.
    I32 = 6,
    /// 64-bit signed integer.
    I64 = 7,
    /// IEEE half.
    F16 = 10,
    /// 32-bit unsigned integer.
    U32 = 12,
    /// bfloat16.
    BF16 = 16,
}

impl Dtype {
    /// The dtype for a code, if known.
    pub fn from_code(code: u32) -> Option<Dtype> {
        [
            Dtype::F32,
            Dtype::I32,
            Dtype::I64,
            Dtype::F16,
            Dtype::U32,
            Dtype::BF16,
        ]
        .into_iter()
        .find(|d| *d as u32 == code)
    }
}

/// A Rust element type with a [`Dtype`] code.
pub trait Element: Copy + Send + Sync + 'static + sealed::Sealed {
    /// Its code.
    const DTYPE: Dtype;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f32 {}
    impl Sealed for i32 {}
    impl Sealed for i64 {}
    impl Sealed for u32 {}
}

impl Element for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl Element for i32 {
    const DTYPE: Dtype = Dtype::I32;
}
impl Element for i64 {
    const DTYPE: Dtype = Dtype::I64;
}
impl Element for u32 {
    const DTYPE: Dtype = Dtype::U32;
}

/// A read-only tensor across the ABI: `XlpTensorView` in C.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct TensorView {
    /// First element; may be null only when the tensor has no elements.
    pub data: *const c_void,
    /// `ndim` dimensions.
    pub shape: *const usize,
    /// Number of dimensions.
    pub ndim: u32,
    /// A [`Dtype`] code.
    pub dtype: u32,
}

/// A tensor the callee writes: `XlpTensorViewMut` in C.
#[derive(Debug, Clone, Copy)]
#[repr(C)]
pub struct TensorViewMut {
    /// First element; null marks an output the caller does not want.
    pub data: *mut c_void,
    /// `ndim` dimensions.
    pub shape: *const usize,
    /// Number of dimensions.
    pub ndim: u32,
    /// A [`Dtype`] code.
    pub dtype: u32,
}

impl TensorViewMut {
    /// A view meaning "no tensor": null data, no dimensions.
    pub const fn absent() -> TensorViewMut {
        TensorViewMut {
            data: std::ptr::null_mut(),
            shape: std::ptr::null(),
            ndim: 0,
            dtype: 0,
        }
    }
}

/// A borrowed dense tensor.
#[derive(Clone, Copy, PartialEq)]
pub struct TensorRef<'a, T> {
    data: &'a [T],
    shape: &'a [usize],
}

/// A mutably borrowed dense tensor.
#[derive(PartialEq)]
pub struct TensorMut<'a, T> {
    data: &'a mut [T],
    shape: &'a [usize],
}

fn element_count(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d))
}

fn shape_error(len: usize, shape: &[usize]) -> PluginError {
    PluginError::invalid(format!(
        "tensor of {len} elements cannot have shape {shape:?}"
    ))
}

impl<'a, T: Element> TensorRef<'a, T> {
    /// A tensor over `data` with `shape`; fails unless the element counts agree.
    pub fn new(data: &'a [T], shape: &'a [usize]) -> Result<Self, PluginError> {
        if element_count(shape) != Some(data.len()) {
            return Err(shape_error(data.len(), shape));
        }
        Ok(TensorRef { data, shape })
    }

    /// The elements, row-major.
    pub fn data(&self) -> &'a [T] {
        self.data
    }

    /// The dimensions.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// The C view of this tensor, valid while `self`'s borrows are.
    pub fn as_view(&self) -> TensorView {
        TensorView {
            data: self.data.as_ptr().cast(),
            shape: self.shape.as_ptr(),
            ndim: self.shape.len() as u32,
            dtype: T::DTYPE as u32,
        }
    }

    /// Reads a C view.
    ///
    /// # Safety
    /// `view.shape` must point to `view.ndim` readable `usize`s and `view.data` to as many
    /// readable, initialised elements as the shape implies, both valid and not written to for
    /// `'a`.
    pub unsafe fn from_view(view: &TensorView) -> Result<Self, PluginError> {
        // SAFETY: forwarded to the caller's contract.
        let shape = unsafe { shape_slice(view.shape, view.ndim)? };
        let len = checked_len::<T>(view.data, view.dtype, shape)?;
        let data = if len == 0 {
            &[]
        } else {
            // SAFETY: non-null, aligned (checked above) and, by the caller's contract, valid
            // for `len` elements for `'a`.
            unsafe { std::slice::from_raw_parts(view.data.cast::<T>(), len) }
        };
        Ok(TensorRef { data, shape })
    }
}

impl<'a, T: Element> TensorMut<'a, T> {
    /// A tensor over `data` with `shape`; fails unless the element counts agree.
    pub fn new(data: &'a mut [T], shape: &'a [usize]) -> Result<Self, PluginError> {
        if element_count(shape) != Some(data.len()) {
            return Err(shape_error(data.len(), shape));
        }
        Ok(TensorMut { data, shape })
    }

    /// The elements, row-major.
    pub fn data(&self) -> &[T] {
        self.data
    }

    /// The elements, writable.
    pub fn data_mut(&mut self) -> &mut [T] {
        self.data
    }

    /// The dimensions.
    pub fn shape(&self) -> &'a [usize] {
        self.shape
    }

    /// A read-only reborrow.
    pub fn as_ref(&self) -> TensorRef<'_, T> {
        TensorRef {
            data: self.data,
            shape: self.shape,
        }
    }

    /// The C view of this tensor, valid while `self` is borrowed.
    pub fn as_view_mut(&mut self) -> TensorViewMut {
        TensorViewMut {
            data: self.data.as_mut_ptr().cast(),
            shape: self.shape.as_ptr(),
            ndim: self.shape.len() as u32,
            dtype: T::DTYPE as u32,
        }
    }

    /// Reads a C view.
    ///
    /// # Safety
    /// As [`TensorRef::from_view`], and the data must be writable and not otherwise accessed
    /// for `'a`.
    pub unsafe fn from_view(view: &TensorViewMut) -> Result<Self, PluginError> {
        // SAFETY: forwarded to the caller's contract.
        let shape = unsafe { shape_slice(view.shape, view.ndim)? };
        let len = checked_len::<T>(view.data.cast_const(), view.dtype, shape)?;
        let data = if len == 0 {
            &mut []
        } else {
            // SAFETY: non-null, aligned (checked above) and, by the caller's contract, valid
            // and exclusively ours for `len` elements for `'a`.
            unsafe { std::slice::from_raw_parts_mut(view.data.cast::<T>(), len) }
        };
        Ok(TensorMut { data, shape })
    }
}

/// # Safety
/// `ptr` must point to `ndim` readable `usize`s valid for `'a` (or `ndim` is 0).
unsafe fn shape_slice<'a>(ptr: *const usize, ndim: u32) -> Result<&'a [usize], PluginError> {
    if ndim == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(PluginError::invalid("tensor view has a null shape pointer"));
    }
    // SAFETY: non-null and, by the caller's contract, valid for `ndim` elements.
    Ok(unsafe { std::slice::from_raw_parts(ptr, ndim as usize) })
}

fn checked_len<T: Element>(
    data: *const c_void,
    dtype: u32,
    shape: &[usize],
) -> Result<usize, PluginError> {
    if dtype != T::DTYPE as u32 {
        let found = Dtype::from_code(dtype)
            .map(|d| format!("{d:?}"))
            .unwrap_or_else(|| format!("unknown dtype code {dtype}"));
        return Err(PluginError::invalid(format!(
            "expected a {:?} tensor, got {found}",
            T::DTYPE
        )));
    }
    let len = element_count(shape)
        .filter(|n| {
            n.checked_mul(size_of::<T>())
                .is_some_and(|b| b <= isize::MAX as usize)
        })
        .ok_or_else(|| PluginError::invalid(format!("tensor shape {shape:?} overflows")))?;
    if len > 0 {
        if data.is_null() {
            return Err(PluginError::invalid(format!(
                "tensor of shape {shape:?} has a null data pointer"
            )));
        }
        if !(data as usize).is_multiple_of(align_of::<T>()) {
            return Err(PluginError::invalid("tensor data is not aligned"));
        }
    }
    Ok(len)
}

impl<T: fmt::Debug> fmt::Debug for TensorRef<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorRef")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

impl<T: fmt::Debug> fmt::Debug for TensorMut<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TensorMut")
            .field("shape", &self.shape)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn views_round_trip_any_shape(shape in prop::collection::vec(0usize..5, 0..5), seed in any::<u32>()) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = (0..n).map(|i| (i as u32 ^ seed) as f32).collect();
            let t = TensorRef::new(&data, &shape).unwrap();
            let view = t.as_view();
            // SAFETY: the view was made from live borrows just above.
            let back = unsafe { TensorRef::<f32>::from_view(&view) }.unwrap();
            prop_assert_eq!(back.shape(), &shape[..]);
            prop_assert_eq!(back.data(), &data[..]);

            let mut owned = data.clone();
            let mut m = TensorMut::new(&mut owned, &shape).unwrap();
            let vm = m.as_view_mut();
            // SAFETY: as above; `m` is not used while `back_mut` lives.
            let back_mut = unsafe { TensorMut::<f32>::from_view(&vm) }.unwrap();
            prop_assert_eq!(back_mut.shape(), &shape[..]);
            prop_assert_eq!(back_mut.data(), &data[..]);
        }
    }

    #[test]
    fn wrong_dtype_and_bad_shapes_are_errors() {
        let data = [1i64, 2, 3];
        let shape = [3usize];
        let view = TensorRef::new(&data, &shape).unwrap().as_view();
        // SAFETY: valid view of live data.
        let err = unsafe { TensorRef::<f32>::from_view(&view) }.unwrap_err();
        assert!(
            err.message.contains("expected a F32 tensor, got I64"),
            "{err}"
        );

        assert!(TensorRef::new(&[1.0f32, 2.0], &[3]).is_err());
        let huge = [usize::MAX, 2];
        let view = TensorView {
            data: data.as_ptr().cast(),
            shape: huge.as_ptr(),
            ndim: 2,
            dtype: Dtype::I64 as u32,
        };
        // SAFETY: the shape is valid; the overflow check must fire before data is touched.
        let err = unsafe { TensorRef::<i64>::from_view(&view) }.unwrap_err();
        assert!(err.message.contains("overflows"), "{err}");

        let null = TensorView {
            data: std::ptr::null(),
            ..view
        };
        let one = [1usize];
        let null = TensorView {
            shape: one.as_ptr(),
            ndim: 1,
            ..null
        };
        // SAFETY: null data must be rejected, not dereferenced.
        let err = unsafe { TensorRef::<i64>::from_view(&null) }.unwrap_err();
        assert!(err.message.contains("null data"), "{err}");
    }
}
