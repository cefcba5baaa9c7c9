//! Carrying Burn's module traversals across a trait object.
//!
//! Adapters of different methods live side by side in one [`AdapterSet`](super::AdapterSet) as
//! trait objects, but Burn's [`ModuleVisitor`] and [`ModuleMapper`] have const-generic methods and
//! cannot be called through `dyn`. The bridge goes through [`Any`]: a parameter crosses as a
//! `&dyn Any` (or `Box<dyn Any>`) tagged with its rank, and the other side downcasts it back to
//! `Param<Tensor<D>>` for the one `D` the tag names. Adapter parameters are float tensors of rank 1
//! to 6 plus module flags (dropout's training switch); that is all the bridge carries.

use burn::module::{Flag, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::Tensor;
use std::any::Any;

/// Calls `$body` with a `const $d: usize` equal to the runtime rank, or `$otherwise` for an
/// unsupported rank.
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

/// A float parameter of any rank, borrowed across the object-safe boundary.
pub struct ParamRef<'a> {
    rank: usize,
    value: &'a dyn Any,
}

/// A float parameter of any rank, owned across the object-safe boundary.
pub struct ParamBox {
    rank: usize,
    value: Box<dyn Any + Send>,
}

/// The object-safe face of a [`ModuleVisitor`].
pub trait DynVisitor {
    /// See [`ModuleVisitor::enter_module`].
    fn enter_module(&mut self, name: &str, container_type: &str);
    /// See [`ModuleVisitor::exit_module`].
    fn exit_module(&mut self, name: &str, container_type: &str);
    /// See [`ModuleVisitor::visit_float`].
    fn visit_float(&mut self, param: ParamRef<'_>);
    /// See [`ModuleVisitor::visit_flag`].
    fn visit_flag(&mut self, flag: &Param<Flag>);
}

/// The object-safe face of a [`ModuleMapper`].
pub trait DynMapper {
    /// See [`ModuleMapper::enter_module`].
    fn enter_module(&mut self, name: &str, container_type: &str);
    /// See [`ModuleMapper::exit_module`].
    fn exit_module(&mut self, name: &str, container_type: &str);
    /// See [`ModuleMapper::map_float`].
    fn map_float(&mut self, param: ParamBox) -> ParamBox;
    /// See [`ModuleMapper::map_flag`].
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag>;
}

/// Turns a generic visitor into a [`DynVisitor`] (used on the outer side of the boundary).
pub struct VisitorToDyn<'a, V: ModuleVisitor>(pub &'a mut V);

impl<V: ModuleVisitor> DynVisitor for VisitorToDyn<'_, V> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn visit_float(&mut self, param: ParamRef<'_>) {
        with_rank!(param.rank, D => {
            if let Some(p) = param.value.downcast_ref::<Param<Tensor<D>>>() {
                self.0.visit_float(p);
            }
        }, _ => ())
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.visit_flag(flag);
    }
}

/// Turns a [`DynVisitor`] back into a generic visitor (used inside the erased adapter).
pub struct DynToVisitor<'a>(pub &'a mut dyn DynVisitor);

impl ModuleVisitor for DynToVisitor<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0.visit_float(ParamRef { rank: D, value: param });
    }
    fn visit_flag(&mut self, flag: &Param<Flag>) {
        self.0.visit_flag(flag);
    }
}

/// Turns a generic mapper into a [`DynMapper`].
pub struct MapperToDyn<'a, M: ModuleMapper>(pub &'a mut M);

impl<M: ModuleMapper> DynMapper for MapperToDyn<'_, M> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn map_float(&mut self, param: ParamBox) -> ParamBox {
        let ParamBox { rank, value } = param;
        with_rank!(rank, D => match value.downcast::<Param<Tensor<D>>>() {
            Ok(p) => ParamBox { rank, value: Box::new(self.0.map_float(*p)) },
            Err(value) => ParamBox { rank, value },
        }, _ => ParamBox { rank, value })
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.map_flag(flag)
    }
}

/// Turns a [`DynMapper`] back into a generic mapper.
pub struct DynToMapper<'a>(pub &'a mut dyn DynMapper);

impl ModuleMapper for DynToMapper<'_> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.0.enter_module(name, container_type);
    }
    fn exit_module(&mut self, name: &str, container_type: &str) {
        self.0.exit_module(name, container_type);
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let mapped = self.0.map_float(ParamBox { rank: D, value: Box::new(param) });
        match mapped.value.downcast::<Param<Tensor<D>>>() {
            Ok(p) => *p,
            // `MapperToDyn` returns the rank it was given; nothing else builds a `ParamBox`.
            Err(_) => unreachable!("a mapped parameter keeps its rank"),
        }
    }
    fn map_flag(&mut self, flag: Param<Flag>) -> Param<Flag> {
        self.0.map_flag(flag)
    }
}

/// The module plumbing every erased adapter provides, written once by [`erased_module!`](crate::erased_module!).
///
/// `T` is the trait object type the adapter is stored as (`dyn LinearAdapter`, ...).
pub trait ErasedModule: Send + Sync + std::fmt::Debug {
    /// `Clone` through the trait object.
    fn clone_box(&self) -> Box<Self>;
    /// [`Module::visit`](burn::module::Module::visit) through the trait object.
    fn visit_dyn(&self, visitor: &mut dyn DynVisitor);
    /// [`Module::map`](burn::module::Module::map) through the trait object.
    fn map_dyn(self: Box<Self>, mapper: &mut dyn DynMapper) -> Box<Self>;
    /// [`Module::to_device`](burn::module::Module::to_device) through the trait object.
    fn to_device_dyn(self: Box<Self>, device: &burn::tensor::Device) -> Box<Self>;
    /// [`Module::fork`](burn::module::Module::fork) through the trait object.
    fn fork_dyn(self: Box<Self>, device: &burn::tensor::Device) -> Box<Self>;
    /// [`Module::collect_devices`](burn::module::Module::collect_devices) through the trait object.
    fn collect_devices_dyn(&self, devices: Vec<burn::tensor::Device>) -> Vec<burn::tensor::Device>;
    /// [`Module::valid`](burn::module::Module::valid) through the trait object.
    fn valid_dyn(&self) -> Box<Self>;
    /// [`Module::train`](burn::module::Module::train) through the trait object.
    fn train_dyn(self: Box<Self>) -> Box<Self>;
    /// [`Module::num_params`](burn::module::Module::num_params) through the trait object.
    fn num_params_dyn(&self) -> usize;
}

/// Implements the plumbing methods of an adapter trait (`LinearAdapter`, ...) for a concrete
/// `#[derive(Module)]` type. Use inside the `impl Trait for Type` block:
///
/// ```
/// use burn::module::{Module, Param};
/// use burn::tensor::{Tensor, TensorData};
/// use peft_core::{LinearAdapter, Result};
///
/// /// Scales a layer's output by learned per-feature factors (IA3 on outputs).
/// #[derive(Module, Debug)]
/// struct Scale {
///     factors: Param<Tensor<1>>,
/// }
///
/// impl LinearAdapter for Scale {
///     peft_core::erased_module!(LinearAdapter);
///
///     fn adapt_output(&self, _x: &Tensor<3>, y: Tensor<3>) -> Tensor<3> {
///         y * self.factors.val().unsqueeze::<3>()
///     }
///     fn merge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
///         let f = self.factors.val();
///         Ok((w * f.clone().unsqueeze::<2>(), b.map(|b| b * f)))
///     }
///     fn unmerge(&self, w: Tensor<2>, b: Option<Tensor<1>>) -> Result<(Tensor<2>, Option<Tensor<1>>)> {
///         let f = self.factors.val();
///         Ok((w / f.clone().unsqueeze::<2>(), b.map(|b| b / f)))
///     }
///     fn export(&self) -> Vec<(String, TensorData)> {
///         vec![("ia3_l".into(), self.factors.val().into_data())]
///     }
/// }
/// ```
#[macro_export]
macro_rules! erased_module {
    ($tr:ident) => {
        fn clone_box_dyn(&self) -> Box<dyn $tr> {
            Box::new(::core::clone::Clone::clone(self))
        }
        fn visit_erased(&self, visitor: &mut dyn $crate::adapted::DynVisitor) {
            $crate::burn::module::Module::visit(self, &mut $crate::adapted::DynToVisitor(visitor));
        }
        fn map_erased(self: Box<Self>, mapper: &mut dyn $crate::adapted::DynMapper) -> Box<dyn $tr> {
            Box::new($crate::burn::module::Module::map(*self, &mut $crate::adapted::DynToMapper(mapper)))
        }
        fn to_device_erased(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<dyn $tr> {
            Box::new($crate::burn::module::Module::to_device(*self, device))
        }
        fn fork_erased(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<dyn $tr> {
            Box::new($crate::burn::module::Module::fork(*self, device))
        }
        fn collect_devices_erased(
            &self,
            devices: Vec<$crate::burn::tensor::Device>,
        ) -> Vec<$crate::burn::tensor::Device> {
            $crate::burn::module::Module::collect_devices(self, devices)
        }
        fn valid_erased(&self) -> Box<dyn $tr> {
            Box::new($crate::burn::module::Module::valid(self))
        }
        fn train_erased(self: Box<Self>) -> Box<dyn $tr> {
            Box::new($crate::burn::module::Module::train(*self))
        }
        fn num_params_erased(&self) -> usize {
            $crate::burn::module::Module::num_params(self)
        }
        fn as_any(&self) -> &dyn ::core::any::Any {
            self
        }
    };
}

/// Declares the plumbing methods in an adapter trait and implements [`ErasedModule`] for its
/// trait object type, so an [`AdapterSet`](super::AdapterSet) of it is a Burn module.
#[macro_export]
#[doc(hidden)]
macro_rules! erased_module_trait_impl {
    ($tr:ident) => {
        impl $crate::adapted::ErasedModule for dyn $tr {
            fn clone_box(&self) -> Box<Self> {
                self.clone_box_dyn()
            }
            fn visit_dyn(&self, visitor: &mut dyn $crate::adapted::DynVisitor) {
                self.visit_erased(visitor)
            }
            fn map_dyn(self: Box<Self>, mapper: &mut dyn $crate::adapted::DynMapper) -> Box<Self> {
                self.map_erased(mapper)
            }
            fn to_device_dyn(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<Self> {
                self.to_device_erased(device)
            }
            fn fork_dyn(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<Self> {
                self.fork_erased(device)
            }
            fn collect_devices_dyn(
                &self,
                devices: Vec<$crate::burn::tensor::Device>,
            ) -> Vec<$crate::burn::tensor::Device> {
                self.collect_devices_erased(devices)
            }
            fn valid_dyn(&self) -> Box<Self> {
                self.valid_erased()
            }
            fn train_dyn(self: Box<Self>) -> Box<Self> {
                self.train_erased()
            }
            fn num_params_dyn(&self) -> usize {
                self.num_params_erased()
            }
        }
    };
}

/// Declares, inside an adapter trait, the plumbing methods that [`erased_module!`] implements.
#[macro_export]
#[doc(hidden)]
macro_rules! erased_module_decls {
    ($tr:ident) => {
        /// Clones through the trait object (written by `erased_module!`).
        fn clone_box_dyn(&self) -> Box<dyn $tr>;
        /// Visits parameters through the trait object (written by `erased_module!`).
        fn visit_erased(&self, visitor: &mut dyn $crate::adapted::DynVisitor);
        /// Maps parameters through the trait object (written by `erased_module!`).
        fn map_erased(self: Box<Self>, mapper: &mut dyn $crate::adapted::DynMapper) -> Box<dyn $tr>;
        /// Moves to a device through the trait object (written by `erased_module!`).
        fn to_device_erased(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<dyn $tr>;
        /// Forks to a device through the trait object (written by `erased_module!`).
        fn fork_erased(self: Box<Self>, device: &$crate::burn::tensor::Device) -> Box<dyn $tr>;
        /// Collects devices through the trait object (written by `erased_module!`).
        fn collect_devices_erased(
            &self,
            devices: Vec<$crate::burn::tensor::Device>,
        ) -> Vec<$crate::burn::tensor::Device>;
        /// Validation copy through the trait object (written by `erased_module!`).
        fn valid_erased(&self) -> Box<dyn $tr>;
        /// Training mode through the trait object (written by `erased_module!`).
        fn train_erased(self: Box<Self>) -> Box<dyn $tr>;
        /// Parameter count through the trait object (written by `erased_module!`).
        fn num_params_erased(&self) -> usize;
        /// The concrete adapter, for method crates that downcast their own type.
        fn as_any(&self) -> &dyn ::core::any::Any;
    };
}
