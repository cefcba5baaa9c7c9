// The README's example needs Burn, which this proc-macro crate must not take as a dev-dependency
// (it would be built a second time, for the host): the facade runs the example as its doc test
// (`crates/peft/src/lib.rs`, `mod guide`).
#![cfg_attr(not(doctest), doc = include_str!("../README.md"))]
#![deny(missing_docs)]

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as TokenStream2};
use quote::quote;
use syn::ext::IdentExt;
use syn::punctuated::Punctuated;
use syn::{Data, DeriveInput, Fields, GenericArgument, Ident, LitStr, PathArguments, Token, Type};

/// Implements `peft_core::AdapterSites` (and `peft_core::SiteVisit`, so the struct nests) for a
/// struct with named fields: its adapter sites are its fields, in declaration order, each under
/// its field name.
///
/// Visited fields: those whose type is an adapted layer (`AdaptedLinear`, `AdaptedEmbedding`,
/// `AdaptedConv1d`, `AdaptedConv2d`, `AdaptedBatchNorm2d`) or a `Vec`, array or `Option` of one,
/// and those marked `#[peft(sites)]` (a module that derives `AdapterSites` itself, or a `Vec` of
/// them). Every other field (activations, norms, plain Burn layers, config values) is left out.
///
/// Field attributes: `#[peft(rename = "dense")]` (the path segment, when the field name differs
/// from transformers' module name), `#[peft(head)]` (an output head: `"all-linear"` leaves it
/// out), `#[peft(sites)]`, `#[peft(skip)]` (an adapted layer that is not a site). Struct
/// attributes: `#[peft(default_targets("fc1", "fc2"))]` (LoRA's targets when a config names none),
/// `#[peft(crate = "my::path")]` (where `peft_core` is, when it is neither a dependency of its own
/// nor reached through the `peft` facade). See the crate docs for an example.
#[proc_macro_derive(AdapterSites, attributes(peft))]
pub fn derive_adapter_sites(input: TokenStream) -> TokenStream {
    let input = syn::parse_macro_input!(input as DeriveInput);
    match Model::parse(&input) {
        Ok(model) => {
            let root = model.krate.clone().map_or_else(core_path, |p| quote!(#p));
            model.generate(&input, &root).into()
        }
        Err(e) => e.into_compile_error().into(),
    }
}

/// How the expanded code names peft-core from the user's crate: directly when it is a dependency,
/// through the facade (`peft::core`) when only `peft` is, `::peft_core` otherwise (so the error
/// names the crate to add).
fn core_path() -> TokenStream2 {
    use proc_macro_crate::{FoundCrate, crate_name};
    let named = |name: &str| Ident::new(name, Span::call_site());
    match crate_name("peft-core") {
        Ok(FoundCrate::Itself) => quote!(crate),
        Ok(FoundCrate::Name(name)) => {
            let name = named(&name);
            quote!(::#name)
        }
        Err(_) => match crate_name("peft") {
            Ok(FoundCrate::Itself) => quote!(crate::core),
            Ok(FoundCrate::Name(name)) => {
                let name = named(&name);
                quote!(::#name::core)
            }
            Err(_) => quote!(::peft_core),
        },
    }
}

/// Type names (last path segment) that are adapter sites by themselves.
const LEAVES: &[&str] = &["AdaptedLinear", "AdaptedEmbedding", "AdaptedConv1d", "AdaptedConv2d", "AdaptedBatchNorm2d"];

/// Whether a field of type `ty` is visited without being marked: an adapted layer, or a `Vec`,
/// array or `Option` of them (at any depth).
fn is_site_type(ty: &Type) -> bool {
    match ty {
        Type::Path(p) if p.qself.is_none() => {
            let Some(last) = p.path.segments.last() else { return false };
            let name = last.ident.to_string();
            match &last.arguments {
                PathArguments::None => LEAVES.contains(&name.as_str()),
                PathArguments::AngleBracketed(args) if name == "Vec" || name == "Option" => {
                    matches!(args.args.first(), Some(GenericArgument::Type(inner)) if args.args.len() == 1 && is_site_type(inner))
                }
                _ => false,
            }
        }
        Type::Array(a) => is_site_type(&a.elem),
        // Types passed through `macro_rules!` arrive wrapped in invisible groups.
        Type::Group(g) => is_site_type(&g.elem),
        Type::Paren(p) => is_site_type(&p.elem),
        _ => false,
    }
}

/// A visited field.
struct SiteField {
    ident: Ident,
    ty: Type,
    /// Its path segment(s) under the struct's prefix.
    path: String,
    /// Marked `#[peft(head)]`.
    head: bool,
}

/// What the derive read from the struct.
struct Model {
    fields: Vec<SiteField>,
    default_targets: Option<Vec<String>>,
    krate: Option<syn::Path>,
}

/// A field's `#[peft(...)]` settings.
#[derive(Default)]
struct FieldAttrs {
    sites: bool,
    head: bool,
    skip: bool,
    rename: Option<LitStr>,
}

impl FieldAttrs {
    fn parse(field: &syn::Field) -> syn::Result<Self> {
        let mut out = FieldAttrs::default();
        for attr in field.attrs.iter().filter(|a| a.path().is_ident("peft")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("sites") {
                    out.sites = true;
                } else if meta.path.is_ident("head") {
                    out.head = true;
                } else if meta.path.is_ident("skip") {
                    out.skip = true;
                } else if meta.path.is_ident("rename") {
                    let name: LitStr = meta.value()?.parse()?;
                    check_path(&name)?;
                    out.rename = Some(name);
                } else {
                    return Err(meta.error("unknown field attribute; expected `sites`, `head`, `skip` or `rename = \"...\"`"));
                }
                Ok(())
            })?;
        }
        Ok(out)
    }
}

/// A renamed path must be dotted segments, none empty, no spaces: it is matched against
/// `target_modules` and written into adapter files.
fn check_path(name: &LitStr) -> syn::Result<()> {
    let value = name.value();
    let valid = value.split('.').all(|s| !s.is_empty() && !s.chars().any(char::is_whitespace));
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new(name.span(), format!("`{value}` is not a module path: use dotted names without spaces (`dense`, `attn.c_attn`)")))
    }
}

impl Model {
    fn parse(input: &DeriveInput) -> syn::Result<Self> {
        let Data::Struct(data) = &input.data else {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "#[derive(AdapterSites)] needs a struct with named fields; for an enum, implement `SiteVisit` by hand",
            ));
        };
        let Fields::Named(named) = &data.fields else {
            return Err(syn::Error::new_spanned(&input.ident, "#[derive(AdapterSites)] needs named fields: they name the sites"));
        };
        let mut model = Model { fields: Vec::new(), default_targets: None, krate: None };
        model.parse_struct_attrs(input)?;
        for field in &named.named {
            let attrs = FieldAttrs::parse(field)?;
            let Some(ident) = field.ident.clone() else { continue };
            if attrs.skip {
                if attrs.sites || attrs.head || attrs.rename.is_some() {
                    return Err(syn::Error::new_spanned(&ident, "`skip` leaves the field out; it cannot also be `sites`, `head` or renamed"));
                }
                continue;
            }
            if !attrs.sites && !is_site_type(&field.ty) {
                if attrs.head || attrs.rename.is_some() {
                    return Err(syn::Error::new_spanned(
                        &field.ty,
                        "this field is not an adapter site: its type is no adapted layer (`AdaptedLinear`, ...); \
                         mark a nested module `#[peft(sites)]`",
                    ));
                }
                continue;
            }
            let path = attrs.rename.map_or_else(|| ident.unraw().to_string(), |r| r.value());
            if let Some(other) = model.fields.iter().find(|f| f.path == path) {
                return Err(syn::Error::new_spanned(&ident, format!("site path `{path}` is already taken by field `{}`", other.ident)));
            }
            model.fields.push(SiteField { ident, ty: field.ty.clone(), path, head: attrs.head });
        }
        if model.fields.is_empty() {
            return Err(syn::Error::new_spanned(
                &input.ident,
                "no field is an adapter site: use `AdaptedLinear` (or another adapted layer) for the layers to adapt, \
                 and mark nested modules `#[peft(sites)]`",
            ));
        }
        Ok(model)
    }

    fn parse_struct_attrs(&mut self, input: &DeriveInput) -> syn::Result<()> {
        for attr in input.attrs.iter().filter(|a| a.path().is_ident("peft")) {
            attr.parse_nested_meta(|meta| {
                if meta.path.is_ident("default_targets") {
                    let content;
                    syn::parenthesized!(content in meta.input);
                    let names = Punctuated::<LitStr, Token![,]>::parse_terminated(&content)?;
                    if names.is_empty() {
                        return Err(meta.error("`default_targets` needs at least one module name"));
                    }
                    self.default_targets = Some(names.iter().map(LitStr::value).collect());
                } else if meta.path.is_ident("crate") {
                    let path: LitStr = meta.value()?.parse()?;
                    self.krate = Some(path.parse()?);
                } else {
                    return Err(meta.error("unknown struct attribute; expected `default_targets(\"...\", ...)` or `crate = \"...\"`"));
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    /// `impl SiteVisit` (one call per field, under the prefix) and `impl AdapterSites` (the walk
    /// from the root, heads, default targets).
    fn generate(&self, input: &DeriveInput, root: &TokenStream2) -> TokenStream2 {
        let name = &input.ident;
        let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
        // Generic structs need their fields' `SiteVisit` as bounds; concrete ones get none, so a
        // private field type never shows in a public impl's bounds.
        let mut where_clause = where_clause.cloned();
        if input.generics.type_params().next().is_some() {
            let clause = where_clause.get_or_insert_with(|| syn::parse_quote!(where));
            for f in &self.fields {
                let ty = &f.ty;
                clause.predicates.push(syn::parse_quote!(#ty: #root::SiteVisit + ::core::clone::Clone));
            }
        }
        let visits = self.fields.iter().map(|f| {
            let (ident, path) = (&f.ident, &f.path);
            quote!(#root::SiteVisit::visit_sites_at(&mut self.#ident, &#root::join_path(prefix, #path), f);)
        });
        let heads = self.fields.iter().map(|f| {
            let (ident, path) = (&f.ident, &f.path);
            if f.head {
                quote!(out.extend(#root::site_paths_under(&self.#ident, &#root::join_path(prefix, #path)));)
            } else {
                quote!(#root::SiteVisit::head_paths_at(&self.#ident, &#root::join_path(prefix, #path), out);)
            }
        });
        let defaults = self.default_targets.as_ref().map(|names| {
            quote! {
                fn default_target_modules(&self) -> ::std::vec::Vec<::std::string::String> {
                    ::std::vec![#(::std::string::String::from(#names)),*]
                }
            }
        });
        quote! {
            #[automatically_derived]
            impl #impl_generics #root::SiteVisit for #name #ty_generics #where_clause {
                fn visit_sites_at(&mut self, prefix: &str, f: &mut dyn FnMut(&str, #root::SiteMut<'_>)) {
                    #(#visits)*
                }

                fn head_paths_at(&self, prefix: &str, out: &mut ::std::vec::Vec<::std::string::String>) {
                    #(#heads)*
                }
            }

            #[automatically_derived]
            impl #impl_generics #root::AdapterSites for #name #ty_generics #where_clause {
                fn visit_sites_mut(&mut self, f: &mut dyn FnMut(&str, #root::SiteMut<'_>)) {
                    #root::SiteVisit::visit_sites_at(self, "", f);
                }

                fn output_head_paths(&self) -> ::std::vec::Vec<::std::string::String> {
                    let mut out = ::std::vec::Vec::new();
                    #root::SiteVisit::head_paths_at(self, "", &mut out);
                    out
                }

                #defaults
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(input: DeriveInput) -> syn::Result<Model> {
        Model::parse(&input)
    }

    fn paths(model: &Model) -> Vec<(String, bool)> {
        model.fields.iter().map(|f| (f.path.clone(), f.head)).collect()
    }

    fn error(input: DeriveInput) -> String {
        // `Model` is not `Debug`: syn's syntax trees are only with its `extra-traits` feature.
        match parse(input) {
            Ok(_) => panic!("the derive accepted a struct it must refuse"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn adapted_layers_and_marked_fields_are_visited_in_order() {
        let model = parse(syn::parse_quote! {
            #[peft(default_targets("fc1", "fc2"))]
            struct Net {
                fc1: peft_core::AdaptedLinear,
                act: burn::nn::Relu,
                #[peft(rename = "dense")]
                fc2: AdaptedLinear,
                plain: burn::nn::Linear,
                convs: Vec<AdaptedConv2d>,
                pooler: Option<AdaptedLinear>,
                grid: [Vec<AdaptedEmbedding>; 2],
                #[peft(sites)]
                layers: Vec<Block>,
                #[peft(skip)]
                frozen: AdaptedLinear,
                #[peft(head)]
                r#head: AdaptedLinear,
                dropout_p: f64,
            }
        })
        .expect("parses");
        let expected = [("fc1", false), ("dense", false), ("convs", false), ("pooler", false), ("grid", false), ("layers", false), ("head", true)];
        assert_eq!(paths(&model), expected.map(|(p, h)| (p.to_string(), h)));
        assert_eq!(model.default_targets, Some(vec!["fc1".to_string(), "fc2".to_string()]));
    }

    #[test]
    fn site_types_are_recognised_by_their_last_segment_only() {
        let yes: [Type; 4] = [
            syn::parse_quote!(::peft_core::adapted::AdaptedConv1d),
            syn::parse_quote!(Option<Vec<AdaptedBatchNorm2d>>),
            syn::parse_quote!([AdaptedLinear; 3]),
            syn::parse_quote!(std::vec::Vec<AdaptedEmbedding>),
        ];
        let no: [Type; 5] = [
            syn::parse_quote!(Linear),
            syn::parse_quote!(Vec<Linear>),
            syn::parse_quote!(Box<AdaptedLinear>),
            syn::parse_quote!(AdaptedLinear<B>),
            syn::parse_quote!(Block),
        ];
        assert!(yes.iter().all(is_site_type));
        assert!(!no.iter().any(is_site_type));
    }

    #[test]
    fn misuse_is_refused_with_a_reason() {
        let e = error(syn::parse_quote!(enum E { A(AdaptedLinear) }));
        assert!(e.contains("struct with named fields"), "{e}");
        let e = error(syn::parse_quote!(struct T(AdaptedLinear);));
        assert!(e.contains("named fields"), "{e}");
        let e = error(syn::parse_quote!(struct S { act: Relu }));
        assert!(e.contains("no field is an adapter site"), "{e}");
        let e = error(syn::parse_quote!(struct S { fc: AdaptedLinear, #[peft(head)] out: Linear }));
        assert!(e.contains("not an adapter site"), "{e}");
        let e = error(syn::parse_quote!(struct S { a: AdaptedLinear, #[peft(rename = "a")] b: AdaptedLinear }));
        assert!(e.contains("`a` is already taken by field `a`"), "{e}");
        let e = error(syn::parse_quote!(struct S { #[peft(rename = "a..b")] a: AdaptedLinear }));
        assert!(e.contains("not a module path"), "{e}");
        let e = error(syn::parse_quote!(struct S { #[peft(skip, head)] a: AdaptedLinear, b: AdaptedLinear }));
        assert!(e.contains("cannot also be"), "{e}");
        let e = error(syn::parse_quote!(struct S { #[peft(target)] a: AdaptedLinear }));
        assert!(e.contains("unknown field attribute"), "{e}");
        let e = error(syn::parse_quote!(#[peft(default_targets())] struct S { a: AdaptedLinear }));
        assert!(e.contains("at least one"), "{e}");
        let e = error(syn::parse_quote!(#[peft(targets("a"))] struct S { a: AdaptedLinear }));
        assert!(e.contains("unknown struct attribute"), "{e}");
    }

    #[test]
    fn the_crate_path_can_be_given() {
        let model = parse(syn::parse_quote!(#[peft(crate = "my::core")] struct S { a: AdaptedLinear })).expect("parses");
        let krate = model.krate.expect("a crate path");
        assert_eq!(quote!(#krate).to_string(), quote!(my::core).to_string());
    }

    #[test]
    fn generic_structs_bound_their_site_fields() {
        let input: DeriveInput = syn::parse_quote!(struct S<T> { #[peft(sites)] inner: T, fc: AdaptedLinear });
        let code = Model::parse(&input).expect("parses").generate(&input, &quote!(::peft_core)).to_string();
        assert!(code.contains(&quote!(T: ::peft_core::SiteVisit + ::core::clone::Clone).to_string()), "{code}");
        let concrete: DeriveInput = syn::parse_quote!(struct S { fc: AdaptedLinear });
        let code = Model::parse(&concrete).expect("parses").generate(&concrete, &quote!(::peft_core)).to_string();
        assert!(!code.contains("where"), "{code}");
    }
}
