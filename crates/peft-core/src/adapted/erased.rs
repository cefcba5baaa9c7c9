//! Carrying Burn's module operations across a trait object — private plumbing.
//!
//! Adapters of different methods live side by side in one [`AdapterSet`](super::AdapterSet) as
//! trait objects (`dyn LinearAdapter`, ...), but Burn's [`Module`] is not object safe: its
//! visitors and mappers have const-generic methods. An adapter author implements only the typed
//! trait (`impl LinearAdapter for MyAdapter`) on a `#[derive(Module)]` type; erasing it
//! ([`Erased::new`]) captures, while the concrete type is still known, a table of plain
//! functions ([`ModuleOps`]) that perform each module operation by downcasting back to it.
//!
//! A parameter crosses the boundary as a `&dyn Any` (or `Box<dyn Any>`) tagged with its kind
//! (float, int, bool) and rank; the other side downcasts it back to `Param<Tensor<D, K>>` for
//! the one `D` and `K` the tag names. Ranks 1 to 6 are carried.

use burn::module::{Flag, Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::{Bool, Device, Int, Tensor};
use std::any::Any;
use std::fmt::Debug;

/// What every adapter trait object can do: be seen as [`Any`] (to downcast to the concrete type,
/// as method crates do with their own adapters) and be shared across threads.
///
/// Implemented for every sized type; adapter traits name it as their supertrait.
pub trait AdapterObject: Any + Send + Sync + Debug {
    /// The concrete adapter, to downcast.
    fn as_any(&self) -> &dyn Any;
    /// The concrete adapter, mutably (AdaLoRA masks ranks in place).
    fn as_any_mut(&mut self) -> &mut dyn Any;
    /// The concrete adapter, owned.
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
}

impl<X: Any + Send + Sync + Debug> AdapterObject for X {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
}

/// Turns a boxed concrete adapter into the trait object `T` (one impl per adapter trait, written
/// by the `adapter_object!` macro next to the trait).
pub trait Upcast<T: ?Sized>: Sized {
    /// The adapter as the trait object.
    fn upcast(self: Box<Self>) -> Box<T>;
}

/// Implements [`Upcast`] into `dyn $tr` for every type implementing `$tr`.
macro_rules! adapter_object {
    ($tr:ident) => {
        impl<A: $tr> $crate::adapted::Upcast<dyn $tr> for A {
            fn upcast(self: Box<Self>) -> Box<dyn $tr> {
                self
            }
        }
    };
}
pub(crate) use adapter_object;

/// The kind of tensor a parameter holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Float,
    Int,
    Bool,
}

/// A parameter of any kind and rank, borrowed across the object-safe boundary.
pub(crate) struct ParamRef<'a> {
    kind: Kind,
    rank: usize,
    value: &'a dyn Any,
}

/// A parameter of any kind and rank, owned across the object-safe boundary.
pub(crate) struct ParamBox {
    kind: Kind,
    rank: usize,
    value: Box<dyn Any + Send>,
}

/// Calls `$body` with a `const $d: usize` equal to the runtime rank, or `$otherwise`.
macro_rules! with_rank {
    ($rank:expr, $d:ident => $body:expr, _ => $otherwise:expr) => {
        match $rank {
            1 => { const $d: usize = 1; $body }
            2 => { const $d: usize = 2; $body }
            3 => { const $d: usize = 3; $body }
            4 => { const $d: usize = 4; $body }
            5 => { const $d: usize = 5; $body }
            6 => { const $d: usize = 6; $body }
            _ => $otherwise,
        }
    };
}

/// The object-safe face of a [`ModuleVisitor`].
pub(crate) trait DynVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str);
    fn exit_module(&mut self, name: &str, container_type: &str);
    fn visit_param(&mut self, param: ParamRef<'_>);
    fn visit_flag(&mut self, flag: &Param<Flag>);
}

/// The object-safe face of a [`ModuleMapper`].
pub(crate) trait DynMapper {
    fn enter_module(&mut self, name: &str, container_type: &str);
    fn exit_module(&mut self, name: &str, container_type: &str);
    fn map_param(&mut self, param: ParamBox) -> ParamBox;
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag>;
}

/// A generic visitor seen as a [`DynVisitor`] (the outer side of the boundary).
pub(crate) struct VisitorToDyn<'a, V: ModuleVisitor>(pub &'a mut V);

impl<V: ModuleVisitor> DynVisitor for VisitorToDyn<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn visit_param(&mut self, param: ParamRef<'_>) {
        let ParamRef { kind, rank, value } = param;
        with_rank!(rank, D => match kind {
            Kind::Float => if let Some(p) = value.downcast_ref::<Param<Tensor<D>>>() { self.0.visit_float(p) },
            Kind::Int => if let Some(p) = value.downcast_ref::<Param<Tensor<D, Int>>>() { self.0.visit_int(p) },
            Kind::Bool => if let Some(p) = value.downcast_ref::<Param<Tensor<D, Bool>>>() { self.0.visit_bool(p) },
        }, _ => ())
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.visit_flag(flag);
    }
}

/// A [`DynVisitor`] seen as a generic visitor (inside the erased adapter).
struct DynToVisitor<'a>(&'a mut dyn DynVisitor);

impl ModuleVisitor for DynToVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.visit_param(ParamRef { kind: Kind::Float, rank: D, value: param });
    }
    fn visit_int<const D: usize>(&mut self, param: &Param<Tensor<D, Int>>) {
        self.0.visit_param(ParamRef { kind: Kind::Int, rank: D, value: param });
    }
    fn visit_bool<const D: usize>(&mut self, param: &Param<Tensor<D, Bool>>) {
        self.0.visit_param(ParamRef { kind: Kind::Bool, rank: D, value: param });
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.visit_flag(flag);
    }
}

/// A generic mapper seen as a [`DynMapper`].
pub(crate) struct MapperToDyn<'a, M: ModuleMapper>(pub &'a mut M);

impl<M: ModuleMapper> DynMapper for MapperToDyn<'_, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn map_param(&mut self, param: ParamBox) -> ParamBox {
        let ParamBox { kind, rank, value } = param;
        // A parameter of an unexpected type passes through unchanged.
        let value: Box<dyn Any + Send> = with_rank!(rank, D => match kind {
            Kind::Float => match value.downcast::<Param<Tensor<D>>>() {
                Ok(p) => Box::new(self.0.map_float(*p)),
                Err(v) => v,
            },
            Kind::Int => match value.downcast::<Param<Tensor<D, Int>>>() {
                Ok(p) => Box::new(self.0.map_int(*p)),
                Err(v) => v,
            },
            Kind::Bool => match value.downcast::<Param<Tensor<D, Bool>>>() {
                Ok(p) => Box::new(self.0.map_bool(*p)),
                Err(v) => v,
            },
        }, _ => value);
        ParamBox { kind, rank, value }
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.map_flag(flag)
    }
}

/// A [`DynMapper`] seen as a generic mapper.
struct DynToMapper<'a>(&'a mut dyn DynMapper);

impl DynToMapper<'_> {
    fn map<P: Send + 'static>(&mut self, kind: Kind, rank: usize, param: P) -> P {
        let mapped = self.0.map_param(ParamBox { kind, rank, value: Box::new(param) });
        match mapped.value.downcast::<P>() {
            Ok(p) => *p,
            // `MapperToDyn` returns the type it was given; nothing else builds a `ParamBox`.
            Err(_) => unreachable!("a mapped parameter keeps its kind and rank"),
        }
    }
}

impl ModuleMapper for DynToMapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        self.map(Kind::Float, D, param)
    }
    fn map_int<const D: usize>(&mut self, param: Param<Tensor<D, Int>>) -> Param<Tensor<D, Int>> {
        self.map(Kind::Int, D, param)
    }
    fn map_bool<const D: usize>(&mut self, param: Param<Tensor<D, Bool>>) -> Param<Tensor<D, Bool>> {
        self.map(Kind::Bool, D, param)
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.map_flag(flag)
    }
}

/// Burn's module operations on an erased adapter of concrete type `A`, as plain functions.
pub(crate) struct ModuleOps<T: ?Sized> {
    pub(crate) clone: fn(&T) -> Box<T>,
    pub(crate) visit: fn(&T, &mut dyn DynVisitor),
    pub(crate) map: fn(Box<T>, &mut dyn DynMapper) -> Box<T>,
    pub(crate) to_device: fn(Box<T>, &Device) -> Box<T>,
    pub(crate) fork: fn(Box<T>, &Device) -> Box<T>,
    pub(crate) collect_devices: fn(&T, Vec<Device>) -> Vec<Device>,
    pub(crate) valid: fn(&T) -> Box<T>,
    pub(crate) train: fn(Box<T>) -> Box<T>,
    pub(crate) num_params: fn(&T) -> usize,
}

impl<T: ?Sized> Clone for ModuleOps<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T: ?Sized> Copy for ModuleOps<T> {}

/// The concrete adapter inside a trait object. The ops table is built for the type the object
/// was made from, so the downcast cannot fail.
fn concrete<A: 'static, T: ?Sized + AdapterObject>(t: &T) -> &A {
    match t.as_any().downcast_ref::<A>() {
        Some(a) => a,
        None => unreachable!("an erased adapter's operations match its type"),
    }
}

fn owned<A: 'static, T: ?Sized + AdapterObject>(t: Box<T>) -> A {
    match t.into_any().downcast::<A>() {
        Ok(a) => *a,
        Err(_) => unreachable!("an erased adapter's operations match its type"),
    }
}

impl<T: ?Sized + AdapterObject> ModuleOps<T> {
    fn of<A: Module + Upcast<T> + 'static>() -> Self {
        ModuleOps {
            clone: |t| Box::new(concrete::<A, T>(t).clone()).upcast(),
            visit: |t, v| concrete::<A, T>(t).visit(&mut DynToVisitor(v)),
            map: |t, m| Box::new(owned::<A, T>(t).map(&mut DynToMapper(m))).upcast(),
            to_device: |t, d| Box::new(owned::<A, T>(t).to_device(d)).upcast(),
            fork: |t, d| Box::new(owned::<A, T>(t).fork(d)).upcast(),
            collect_devices: |t, devices| concrete::<A, T>(t).collect_devices(devices),
            valid: |t| Box::new(concrete::<A, T>(t).valid()).upcast(),
            train: |t| Box::new(owned::<A, T>(t).train()).upcast(),
            num_params: |t| concrete::<A, T>(t).num_params(),
        }
    }
}

/// An adapter as a trait object `T` (`dyn LinearAdapter`, ...) that Burn can still traverse.
///
/// Made with [`Erased::new`] from any `#[derive(Module)]` type implementing the adapter trait.
pub struct Erased<T: ?Sized> {
    pub(crate) value: Box<T>,
    pub(crate) ops: ModuleOps<T>,
}

impl<T: ?Sized + AdapterObject> Erased<T> {
    /// Erases `adapter` (a Burn module implementing the adapter trait `T` stands for).
    pub fn new<A: Module + Upcast<T> + 'static>(adapter: A) -> Self {
        Erased { value: Box::new(adapter).upcast(), ops: ModuleOps::of::<A>() }
    }

    /// The adapter as the trait object.
    pub fn get(&self) -> &T {
        &self.value
    }

    /// The concrete adapter, if it is an `A`.
    pub fn downcast_ref<A: 'static>(&self) -> Option<&A> {
        // Through `&T`: on the `Box` itself, method lookup would find the box's own `AdapterObject`.
        self.get().as_any().downcast_ref::<A>()
    }

    /// The concrete adapter, mutably, if it is an `A` (to change its weights in place).
    pub fn downcast_mut<A: 'static>(&mut self) -> Option<&mut A> {
        let value: &mut T = &mut self.value;
        value.as_any_mut().downcast_mut::<A>()
    }

    pub(crate) fn visit_with<V: ModuleVisitor>(&self, visitor: &mut V) {
        (self.ops.visit)(&self.value, &mut VisitorToDyn(visitor));
    }

    pub(crate) fn map_with<M: ModuleMapper>(self, mapper: &mut M) -> Self {
        let Erased { value, ops } = self;
        Erased { value: (ops.map)(value, &mut MapperToDyn(mapper)), ops }
    }

    pub(crate) fn apply(self, f: impl FnOnce(&ModuleOps<T>, Box<T>) -> Box<T>) -> Self {
        let Erased { value, ops } = self;
        Erased { value: f(&ops, value), ops }
    }
}

impl<T: ?Sized> Clone for Erased<T> {
    fn clone(&self) -> Self {
        Erased { value: (self.ops.clone)(&self.value), ops: self.ops }
    }
}

impl<T: ?Sized + Debug> Debug for Erased<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.value.fmt(f)
    }
}
